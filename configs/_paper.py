"""Shared settings of the paper-scale presets (Kaplan et al. 2020 §2.2 on GPU/TPU).

GPT-2's tied input/output embeddings and vocabulary size, so the totals match the names:
125M = 124,439,808 parameters (GPT-2 small exactly), 350M = 354,823,168 (GPT-2 medium),
1.3B = 1,313,626,112. Batch 512 sequences x 1024 tokens, linear warmup 3000 steps then
cosine to zero, Adam with Kaplan's LR(N) rule, 2.5e5 steps, bf16 compute over f32 master
weights, FSDP over all devices. Data: C4 from the TFDS catalog (build it first with
`tfds build c4 --file_format=array_record`), or override `--config.data.name`.
Memory per device on TPU slices: README "Which paper-scale preset fits where" (compiled by
`scaling-jax compile`, bench/bench_tpu_compile.py).
"""

from scaling_jax.config import default_config


def paper_config(n_layer: int, d_model: int, n_heads: int, remat: str = "full"):
  c = default_config()
  c.model.update(n_layer=n_layer, d_model=d_model, n_heads=n_heads, d_ff=4 * d_model,
                 n_ctx=1024, vocab_size=50257, tie_embeddings=True, dtype="bfloat16",
                 param_dtype="float32", remat=remat)
  c.train.update(batch_size=512, num_steps=250_000, log_every=100, eval_every=2000,
                 ckpt_every=2000, keep_checkpoints=3, async_checkpointing=True)
  c.optim.update(name="adamw", lr_rule="kaplan", warmup_steps=3000, schedule="cosine",
                 b1=0.9, b2=0.95, weight_decay=0.1)
  c.mesh.update(data=1, fsdp=-1, tensor=1)
  c.data.update(name="c4", eval_batches=16)
  return c
