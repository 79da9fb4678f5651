"""Attention module: a drop-in for torch.nn.MultiheadAttention (a subclass, so the constructor
arguments, parameters, initialisation, repr, state_dict and ``isinstance`` checks are its).

``forward`` follows ``torch.nn.functional.multi_head_attention_forward`` step by step (mask
canonicalisation and merging, the ``is_causal`` hint, ``add_bias_kv``, ``add_zero_attn``,
unbatched inputs, ``batch_first``) with torch_ops kernels: the projections are
``torch_ops.linear`` (one GEMM over the packed ``in_proj_weight`` for self-attention, one for
key/value when ``key is value``), attention is ``torch_ops.scaled_dot_product_attention``
when no weights are asked for, and the explicit ``softmax(q k^T / sqrt(d) + mask)`` with
``torch_ops.softmax`` when they are (``need_weights=True``, PyTorch's default), since the
weights must then exist as a tensor anyway.

Internally the heads are laid out as (N, num_heads, L, head_dim) views of the projections,
whichever of ``batch_first`` the module has; masks are kept in broadcastable form
((1, 1, L, S) for a 2-D attn_mask, (N, 1, 1, S) for key_padding_mask) rather than
expanded to (N * num_heads, L, S) as torch does (the sums are the same numbers). With
``need_weights=True`` the scores are ``baddbmm(mask, q * scale, k^T)`` as in torch (one
rounding of the masked scores), so the weights are torch's in every dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention import scaled_dot_product_attention
from ..linear import linear
from ..softmax import softmax


class MultiheadAttention(nn.MultiheadAttention):
    """Drop-in for ``torch.nn.MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True,
    add_bias_kv=False, add_zero_attn=False, kdim=None, vdim=None, batch_first=False,
    device=None, dtype=None)`` running torch_ops kernels.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` returns ``(attn_output, attn_weights)`` as
    torch's does: bool masks mean True = *not allowed* (the opposite of
    ``scaled_dot_product_attention``'s), float masks are added; ``is_causal`` is a hint that
    ``attn_mask`` is the causal mask (required with it). Pass ``need_weights=False`` for the
    memory-efficient path (no L x S weights are formed). Unlike torch's, it never takes the
    ``torch._native_multi_head_attention`` fast path, and NestedTensor inputs are refused.
    """

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        if query.is_nested or key.is_nested or value.is_nested:
            raise AssertionError("torch_ops.nn.MultiheadAttention does not support NestedTensor inputs")
        E, H = self.embed_dim, self.num_heads
        D = self.head_dim

        # Masks as torch.nn.MultiheadAttention.forward makes them: bool -> float (True -> -inf).
        key_padding_mask = F._canonical_mask(
            mask=key_padding_mask,
            mask_name="key_padding_mask",
            other_type=F._none_or_dtype(attn_mask),
            other_name="attn_mask",
            target_type=query.dtype,
        )
        attn_mask = F._canonical_mask(
            mask=attn_mask,
            mask_name="attn_mask",
            other_type=None,
            other_name="",
            target_type=query.dtype,
            check_other=False,
        )
        is_batched = F._mha_shape_check(query, key, value, key_padding_mask, attn_mask, H)

        # The is_causal hint, as multi_head_attention_forward takes it.
        if is_causal and attn_mask is None:
            raise RuntimeError(
                "Need attn_mask if specifying the is_causal hint. "
                "You may use the Transformer module method "
                "`generate_square_subsequent_mask` to create this mask."
            )
        if is_causal and key_padding_mask is None and not need_weights:
            attn_mask = None  # the kernel makes the causal mask itself
        elif key_padding_mask is not None:
            is_causal = False

        # The checks of multi_head_attention_forward (shapes as it sees them: (len, N, E)).
        if query.shape[-1] != E:
            raise AssertionError(f"was expecting embedding dimension of {E}, but got {query.shape[-1]}")
        k_shape, v_shape = (_seq_first_shape(t, is_batched, self.batch_first) for t in (key, value))
        if not self._qkv_same_embed_dim:
            if k_shape[:2] != v_shape[:2]:
                raise AssertionError(
                    f"key's sequence and batch dims {k_shape[:2]} do not match value's {v_shape[:2]}"
                )
        elif k_shape != v_shape:
            raise AssertionError(f"key shape {k_shape} does not match value shape {v_shape}")

        # Projections first, on the tensors as given, so that `query is key is value` selects
        # the packed GEMM for unbatched inputs too.
        q, k, v = _in_projection(self, query, key, value)

        # (N, H, len, D) views; unbatched inputs are a batch of one.
        if not is_batched:
            q, k, v = q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        seq_first = is_batched and not self.batch_first
        order = (1, 2, 0, 3) if seq_first else (0, 2, 1, 3)
        q, k, v = (t.unflatten(-1, (H, D)).permute(order) for t in (q, k, v))
        bsz, _, tgt_len, _ = q.shape
        src_len = k.shape[2]

        if attn_mask is not None:
            if attn_mask.dim() == 2:
                if attn_mask.shape != (tgt_len, src_len):
                    raise RuntimeError(
                        f"The shape of the 2D attn_mask is {attn_mask.shape}, but should be {(tgt_len, src_len)}."
                    )
                attn_mask = attn_mask.view(1, 1, tgt_len, src_len)
            elif attn_mask.dim() == 3:
                if attn_mask.shape != (bsz * H, tgt_len, src_len):
                    raise RuntimeError(
                        f"The shape of the 3D attn_mask is {attn_mask.shape}, "
                        f"but should be {(bsz * H, tgt_len, src_len)}."
                    )
                attn_mask = attn_mask.view(bsz, H, tgt_len, src_len)
            else:
                raise RuntimeError(f"attn_mask's dimension {attn_mask.dim()} is not supported")

        # Extra key/value positions: the learnt bias_k / bias_v, then a zero one.
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self.bias_k.view(1, H, 1, D).expand(bsz, H, 1, D)], dim=2)
            v = torch.cat([v, self.bias_v.view(1, H, 1, D).expand(bsz, H, 1, D)], dim=2)
            attn_mask, key_padding_mask = _pad_masks(attn_mask, key_padding_mask)
        elif self.bias_k is not None or self.bias_v is not None:
            which = ("bias_k", "bias_v") if self.bias_v is None else ("bias_v", "bias_k")
            raise AssertionError(f"{which[0]} is set but {which[1]} is None")
        if self.add_zero_attn:
            zeros = torch.zeros((bsz, H, 1, D), dtype=k.dtype, device=k.device)
            k = torch.cat([k, zeros], dim=2)
            v = torch.cat([v, zeros], dim=2)
            attn_mask, key_padding_mask = _pad_masks(attn_mask, key_padding_mask)
        src_len = k.shape[2]

        if key_padding_mask is not None:
            # F._check_key_padding_mask's checks (its torch._check_with does not trace)
            if key_padding_mask.shape[0] != bsz:
                raise AssertionError(
                    f"Expected key_padded_mask.shape[0] to be {bsz}, but got {key_padding_mask.shape[0]}"
                )
            if key_padding_mask.shape[1] != src_len:
                raise AssertionError(
                    f"Expected key_padded_mask.shape[1] to be {src_len}, but got {key_padding_mask.shape[1]}"
                )
            key_padding_mask = key_padding_mask.view(bsz, 1, 1, src_len)
            attn_mask = key_padding_mask if attn_mask is None else attn_mask + key_padding_mask

        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            # as torch: the mask enters the GEMM (baddbmm: one rounding of mask + q k^T)
            bh = bsz * H
            q_scaled = (q * math.sqrt(1.0 / float(D))).reshape(bh, tgt_len, D)
            k_t = k.reshape(bh, src_len, D).transpose(1, 2)
            if attn_mask is None:
                scores = torch.bmm(q_scaled, k_t)
            else:
                if attn_mask.shape[:2] == (1, 1):  # the same for every batch entry and head
                    attn_mask = attn_mask.flatten(0, 1)
                else:
                    attn_mask = attn_mask.expand(bsz, H, tgt_len, src_len).reshape(bh, tgt_len, src_len)
                scores = torch.baddbmm(attn_mask, q_scaled, k_t)
            weights = softmax(scores, -1)
            if dropout_p > 0.0:
                weights = F.dropout(weights, p=dropout_p)
            out = torch.bmm(weights, v.reshape(bh, src_len, D)).view(bsz, H, tgt_len, D)
            weights = weights.view(bsz, H, tgt_len, src_len)
            if average_attn_weights:
                weights = weights.mean(dim=1)
            if not is_batched:
                weights = weights.squeeze(0)
        else:
            out = scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)

        # (N, H, L, D) -> the input's layout, (.., E); then the output projection.
        out = out.permute(2, 0, 1, 3) if seq_first else out.transpose(1, 2)
        out = linear(out.reshape(*out.shape[:2], E), self.out_proj.weight, self.out_proj.bias)
        if not is_batched:
            out = out.squeeze(0)
        return out, weights


def _in_projection(
    mha: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v = the input projections, as torch's _in_projection_packed / _in_projection.
    (A function, not a method: convert() gives subclasses of torch's class our forward only.)"""
    E = mha.embed_dim
    b = mha.in_proj_bias
    if not mha._qkv_same_embed_dim:
        b_q, b_k, b_v = (None, None, None) if b is None else b.chunk(3)
        return (
            linear(query, mha.q_proj_weight, b_q),
            linear(key, mha.k_proj_weight, b_k),
            linear(value, mha.v_proj_weight, b_v),
        )
    w = mha.in_proj_weight
    if key is value:
        if query is key:  # self-attention: one GEMM
            q, k, v = linear(query, w, b).unflatten(-1, (3, E)).unbind(-2)
            return q, k, v
        w_q, w_kv = w.split([E, 2 * E])
        b_q, b_kv = (None, None) if b is None else b.split([E, 2 * E])
        k, v = linear(key, w_kv, b_kv).unflatten(-1, (2, E)).unbind(-2)
        return linear(query, w_q, b_q), k, v
    w_q, w_k, w_v = w.chunk(3)
    b_q, b_k, b_v = (None, None, None) if b is None else b.chunk(3)
    return linear(query, w_q, b_q), linear(key, w_k, b_k), linear(value, w_v, b_v)


def _seq_first_shape(t: Tensor, is_batched: bool, batch_first: bool) -> torch.Size:
    """The shape of ``t`` as multi_head_attention_forward sees it: (len, N, E)."""
    if not is_batched:
        return torch.Size((t.shape[0], 1, *t.shape[1:]))
    return torch.Size((t.shape[1], t.shape[0], *t.shape[2:])) if batch_first else t.shape


def _pad_masks(attn_mask: Tensor | None, key_padding_mask: Tensor | None):
    """One more (unmasked) source position in each mask."""
    if attn_mask is not None:
        attn_mask = F.pad(attn_mask, (0, 1))
    if key_padding_mask is not None:
        key_padding_mask = F.pad(key_padding_mask, (0, 1))
    return attn_mask, key_padding_mask
