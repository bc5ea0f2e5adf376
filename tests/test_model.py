"""FourMNetwork: exact official state_dict layout, forward/backward in the official batch format, checkpoints."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from fourm_core.keys import KeyInfo, KeyTable
from fourm_core.model import FourMNetwork, fourm_config, parse_official_model_name
from fourm_core.registry import Registry

# Reference section 2.6: FourM(dim=64, depth 2/2, heads 4, swiglu_nobias), encoder rgb@224, caption, tok_depth@224;
# decoder caption, tok_depth@224. (key, shape) in state_dict order.
_ENC_BLOCK = [
    ("norm1.weight", (64,)),
    ("norm1.bias", (64,)),
    ("attn.qkv.weight", (192, 64)),
    ("attn.proj.weight", (64, 64)),
    ("norm2.weight", (64,)),
    ("norm2.bias", (64,)),
    ("mlp.fc1.weight", (170, 64)),
    ("mlp.fc2.weight", (64, 170)),
    ("mlp.fc3.weight", (170, 64)),
]
_DEC_BLOCK = [
    ("norm1.weight", (64,)),
    ("norm1.bias", (64,)),
    ("self_attn.qkv.weight", (192, 64)),
    ("self_attn.proj.weight", (64, 64)),
    ("cross_attn.q.weight", (64, 64)),
    ("cross_attn.kv.weight", (128, 64)),
    ("cross_attn.proj.weight", (64, 64)),
    ("query_norm.weight", (64,)),
    ("query_norm.bias", (64,)),
    ("context_norm.weight", (64,)),
    ("context_norm.bias", (64,)),
    ("norm2.weight", (64,)),
    ("norm2.bias", (64,)),
    ("mlp.fc1.weight", (170, 64)),
    ("mlp.fc2.weight", (64, 170)),
    ("mlp.fc3.weight", (170, 64)),
]


def _token_key(side: str, key: str, tokens: int, vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    """The state_dict entries of one token key's embedding on one side: modality and position embeddings and the
    token table, and on the decoder side an (untied) logits head after them."""
    prefix = f"{side}_embeddings.{key}"
    head = [(f"{prefix}.to_logits.weight", (vocab, 64))] if side == "decoder" else []
    return [
        (f"{prefix}.mod_emb", (1, 1, 64)),
        (f"{prefix}.pos_emb", (1, tokens, 64)),
        (f"{prefix}.token_emb.weight", (vocab, 64)),
        *head,
    ]


OFFICIAL_SMALL = (
    [
        ("mask_token", (1, 1, 64)),
        ("encoder_embeddings.rgb@224.mod_emb", (1, 1, 64)),
        ("encoder_embeddings.rgb@224.pos_emb", (1, 196, 64)),
        ("encoder_embeddings.rgb@224.proj.weight", (64, 768)),
    ]
    + [
        entry
        for side in ("encoder", "decoder")
        for key, tokens, vocab in (("caption", 512, 30000), ("tok_depth@224", 196, 8192))
        for entry in _token_key(side, key, tokens, vocab)
    ]
    + [(f"encoder.{i}.{k}", s) for i in range(2) for k, s in _ENC_BLOCK]
    + [("encoder_norm.weight", (64,)), ("encoder_norm.bias", (64,))]
    + [("decoder_proj_context.weight", (64, 64)), ("decoder_proj_context.bias", (64,))]
    + [(f"decoder.{i}.{k}", s) for i in range(2) for k, s in _DEC_BLOCK]
    + [("decoder_norm.weight", (64,)), ("decoder_norm.bias", (64,))]
)
PAPER_INFO = KeyTable(
    [
        KeyInfo.make("rgb@224", "pixels", 196, image_size=224, patch_size=16),
        KeyInfo.make("caption", "sequence", 256, vocab_size=30000),
        KeyInfo.make("tok_depth@224", "image_tokens", 196, image_size=224, patch_size=16, vocab_size=8192),
    ]
)

SMALL = {"dim": 64, "encoder_depth": 2, "decoder_depth": 2, "num_heads": 4}


def small_official(recipe: str = "swiglu_nobias", **kw) -> FourMNetwork:
    domains = {"domains_in": ["rgb@224", "caption", "tok_depth@224"], "domains_out": ["caption", "tok_depth@224"]}
    return FourMNetwork(fourm_config(PAPER_INFO, "tiny", recipe, **SMALL, **domains, **kw))


def test_state_dict_matches_official_layout() -> None:
    model = small_official()
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == OFFICIAL_SMALL
    buffers = {k for k, _ in model.named_buffers()}
    assert "encoder.0.norm1.bias" in buffers and "encoder_embeddings.caption.pos_emb" in buffers
    assert "decoder_proj_context.bias" not in buffers
    # shared modality embedding: one Parameter, two keys
    assert model.decoder_embeddings["caption"].mod_emb is model.encoder_embeddings["caption"].mod_emb
    # untied heads (HF wrapper) by default
    dec = model.decoder_embeddings["caption"]
    assert dec.to_logits.weight is not dec.token_emb.weight


def test_gelu_and_qknorm_variants_add_official_keys() -> None:
    sd = small_official("gelu").state_dict()
    for key, shape in [
        ("encoder.0.attn.qkv.bias", (192,)),
        ("decoder.1.cross_attn.kv.bias", (128,)),
        ("encoder.0.mlp.fc1.weight", (256, 64)),
        ("encoder.0.mlp.fc2.bias", (64,)),
    ]:
        assert tuple(sd[key].shape) == shape
    assert "encoder.0.mlp.fc3.weight" not in sd
    sd = small_official(qk_norm=True).state_dict()
    assert tuple(sd["decoder.0.cross_attn.k_norm.weight"].shape) == (16,)
    assert "encoder.0.attn.q_norm.bias" in sd
    keys = list(small_official(num_register_tokens=2).state_dict())
    assert keys[:2] == ["mask_token", "register_tokens"]


def test_learned_positions_come_before_mod_emb() -> None:
    info = KeyTable([KeyInfo.make("glob", "global_tokens", 16, vocab_size=64, id=7)])
    model = FourMNetwork(fourm_config(info, "tiny", **SMALL))
    keys = [k for k in model.state_dict() if k.startswith("encoder_embeddings.")]
    assert keys == [
        "encoder_embeddings.glob.pos_emb",
        "encoder_embeddings.glob.mod_emb",
        "encoder_embeddings.glob.token_emb.weight",
    ]
    assert isinstance(model.encoder_embeddings["glob"].pos_emb, torch.nn.Parameter)


def _batch(info: KeyTable, batch: int, gen: torch.Generator) -> dict:
    """Random official-format batch: half of each modality is input, the rest target."""
    out = {}
    for key, m in info.items():
        n = 2 * (m.max_tokens + 1) if m.is_sequence else m.max_tokens
        if m.is_pixels:
            s = int(m.image_size or 0)
            tensor = torch.randn(batch, m.num_channels, s, s, generator=gen)
        elif m.is_embedding:
            tensor = torch.randn(batch, n, int(m.feature_dim or 0), generator=gen)
        else:
            tensor = torch.randint(0, int(m.vocab_size or 0), (batch, n), generator=gen)
        split = n // 2
        input_mask = torch.ones(batch, n, dtype=torch.bool)
        target_mask = torch.ones(batch, n, dtype=torch.bool)
        attn = torch.zeros(batch, n, dtype=torch.int32)
        input_mask[:, : split // 2] = False
        if m.target:
            target_mask[:, split : split + n // 4 + 2] = False
            if m.is_sequence:
                attn[:, split : split + n // 4 + 2] = 1  # causal
            else:
                attn[:, split] = n // 4 + 2  # full attention within the modality
        out[key] = {"tensor": tensor, "input_mask": input_mask, "target_mask": target_mask}
        out[key]["decoder_attention_mask"] = attn
    return out


@pytest.fixture(scope="module")
def tiny_info() -> KeyTable:
    return KeyTable.from_registry(Registry(disabled={"albedo"}), "tiny", text_vocab_size=1000)


def tiny_model(info: KeyTable, **overrides: object) -> FourMNetwork:
    return FourMNetwork(fourm_config(info, "tiny", **SMALL, **overrides))


def test_forward_backward_on_registry_modalities(tiny_info: KeyTable) -> None:
    torch.manual_seed(0)
    model = tiny_model(tiny_info)
    assert set(model.decoder_embeddings) == set(tiny_info.targets())
    batch = _batch(tiny_info, 2, torch.Generator().manual_seed(0))
    loss, per_mod = model(batch, num_encoder_tokens=128, num_decoder_tokens=128)
    assert torch.isfinite(loss)
    assert set(per_mod) == set(model.decoder_embeddings)
    assert all(torch.isfinite(v) for v in per_mod.values())
    assert torch.allclose(loss, sum(per_mod.values()) / len(per_mod))
    loss.backward()
    assert model.mask_token.grad is not None and torch.isfinite(model.mask_token.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_save_load_round_trip(tiny_info: KeyTable, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = tiny_model(tiny_info, shuffle_decoder_modalities=False).eval()
    batch = _batch(tiny_info, 2, torch.Generator().manual_seed(1))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "config.json").exists()
    loaded = FourMNetwork.from_pretrained(tmp_path).eval()
    assert loaded.config == model.config and loaded.shuffle_decoder_modalities is False
    with torch.no_grad():
        a = model(batch, 96, 96)
        b = loaded(batch, 96, 96)
    assert torch.equal(a[0], b[0])
    for key in a[1]:
        assert torch.equal(a[1][key], b[1][key])
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_strict_load_and_shuffle_invariance(tiny_info: KeyTable) -> None:
    torch.manual_seed(2)
    src, dst = tiny_model(tiny_info).eval(), tiny_model(tiny_info).eval()
    result = dst.load_state_dict(src.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    partial = dict(src.state_dict())
    partial.pop("mask_token")
    with pytest.raises(RuntimeError):
        dst.load_state_dict(partial, strict=True)
    batch = _batch(tiny_info, 2, torch.Generator().manual_seed(2))
    random.seed(0)
    with torch.no_grad():
        # a budget that holds every target, so the (shuffled) decoder modality order cannot change what is kept
        ref = src(batch, 96, 4096)[1]
        again = dst(batch, 96, 4096)[1]
    for key in ref:
        assert torch.allclose(ref[key], again[key], atol=1e-5)


def test_sincos_tables_match_official_formulas() -> None:
    from fourm_core.model.blocks import build_1d_sincos_posemb, build_2d_sincos_posemb

    one = build_1d_sincos_posemb(512, 8)
    assert one.shape == (1, 512, 8)
    assert torch.allclose(one[0, 3, :4], torch.sin(3 / 10000 ** (torch.arange(4) / 4)))
    two = build_2d_sincos_posemb(14, 14, 64)[0]
    # quirk replicated: the first ("w") half encodes the row index of a row-major patch grid
    row, col = 2, 5
    omega = 1 / 10000 ** (torch.arange(16) / 16)
    assert torch.allclose(two[row * 14 + col, :16], torch.sin(row * omega))
    assert torch.allclose(two[row * 14 + col, 32:48], torch.sin(col * omega))


OFFICIAL_CONFIG = "4m-b_mod21_500b.yaml"


@pytest.mark.parametrize(("size", "millions"), [("B", 198.2), ("L", 704.5), ("XL", 2818.0)])
def test_transformer_parameter_counts_match_readme(size: str, millions: float) -> None:
    with torch.device("meta"):
        model = FourMNetwork(fourm_config({}, size))
    blocks = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("encoder.", "decoder.")))
    assert abs(blocks / 1e6 - millions) / millions < 0.005


def test_official_training_config_names_a_known_size(fourm_ml4m_data: Path) -> None:
    """Needs the official ml-4m files: the ``fourm_ml4m_data`` fixture skips, naming ``FOURM_ML4M_DATA``."""
    yaml = pytest.importorskip("yaml")
    path = fourm_ml4m_data / OFFICIAL_CONFIG
    if not path.is_file():
        pytest.skip(f"official training config not at {path} (set FOURM_ML4M_DATA to the ml-4m data folder)")
    cfg = yaml.safe_load(path.read_text())
    size, recipe, qk_norm = parse_official_model_name(cfg["model"])
    assert (size, recipe, qk_norm) == ("B", "swiglu_nobias", False)
    assert cfg["patch_size"] == 16 and cfg["input_size"] == 224


def test_sdpa_attention_matches_official_explicit_matmul() -> None:
    from fourm_core.model.blocks import Attention

    torch.manual_seed(3)
    attn = Attention(32, num_heads=4, qkv_bias=True)
    x = torch.randn(2, 5, 32)
    mask = torch.rand(2, 5, 5) > 0.5
    mask[0, 1] = True  # a fully blocked row: uniform softmax, no NaN (official masked_fill(-finfo.max))
    qkv = attn.qkv(x).reshape(2, 5, 3, 4, 8).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = (q @ k.transpose(-2, -1)) * 8**-0.5
    scores = scores.masked_fill(mask.unsqueeze(1), -torch.finfo(scores.dtype).max)
    ref = attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 32))
    out = attn(x, mask)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, ref, atol=1e-5)


def test_pixel_patches_are_channel_innermost() -> None:
    model = small_official()
    emb = model.encoder_embeddings["rgb@224"]
    img = torch.randn(1, 3, 224, 224)
    d = emb({"tensor": img, "input_mask": torch.zeros(1, 196, dtype=torch.bool)})
    # patch (row 1, col 2): rows 16..31, cols 32..47, flattened (ph pw c)
    patch = img[0, :, 16:32, 32:48].permute(1, 2, 0).reshape(-1)
    assert torch.allclose(d["x"][0, 1 * 14 + 2], emb.proj(patch), atol=1e-5)
