"""Shared settings of the paper-scale presets (Kaplan et al. 2020 §2.2 on GPU/TPU).

Batch 512 sequences x 1024 tokens, linear warmup 3000 steps then cosine to zero, Adam with
Kaplan's LR(N) rule, 2.5e5 steps, bf16 compute over f32 master weights, FSDP over all
devices, GPT-2's vocabulary size. Data: C4 from the TFDS catalog (build it first with
`tfds build c4 --file_format=array_record`), or override `--config.data.name`.
Memory per device (launch/memory.py, README "Which preset fits where"): 125M fits 8xH100
without remat; 350M and 1.3B need `remat="full"` (set below) or micro-batches.
"""

from scaling_jax.config import default_config


def paper_config(n_layer: int, d_model: int, n_heads: int, remat: str = "full"):
  c = default_config()
  c.model.update(n_layer=n_layer, d_model=d_model, n_heads=n_heads, d_ff=4 * d_model,
                 n_ctx=1024, vocab_size=50257, dtype="bfloat16", param_dtype="float32",
                 remat=remat)
  c.train.update(batch_size=512, num_steps=250_000, log_every=100, eval_every=2000,
                 ckpt_every=2000, keep_checkpoints=3, async_checkpointing=True)
  c.optim.update(name="adamw", lr_rule="kaplan", warmup_steps=3000, schedule="cosine",
                 b1=0.9, b2=0.95, weight_decay=0.1)
  c.mesh.update(data=1, fsdp=-1, tensor=1)
  c.data.update(name="c4", eval_batches=16)
  return c
