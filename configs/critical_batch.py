"""The critical-batch study on a CPU (`scaling-jax critical-batch`): one small model, measured
three ways (GNS, batch-size sweep, branched probes).

get_config(): what every run trains (each run then sets its batch, length, LR and stopping
loss). get_study(): the study's design; override as --study.FIELD=VALUE. Sized to finish in
20 min on 2 CPU cores on the embedded corpus (README "Critical batch size three ways").
"""

import ml_collections

from scaling_jax.config import default_config


def get_config():
  c = default_config()
  c.model.update(n_layer=2, d_model=64, n_heads=2, d_ff=256, n_ctx=64, vocab_size=4096)
  c.train.update(log_every=10, ckpt_every=200, progress=False)
  # Constant LR after a short warmup in every run: the base run's GNS, the sweep and the
  # branches then all see the same LR, and a loss level is not reached "because the
  # schedule annealed" (bcrit's docstring: B_simple grows as the LR decays).
  c.optim.update(lr=2e-3, warmup_steps=30, schedule="constant")
  c.data.update(name="stdlib", eval_sets=("validation",))
  return c


def get_study():
  s = ml_collections.ConfigDict()
  s.base_batch = 16  # sequences: the base run (GNS logged, checkpoints at branch_steps)
  s.base_steps = 800
  s.branch_steps = (100, 250, 500)  # base steps the branches start from
  # sequences: the ladder of the sweep and of every branch (512-8192 tokens: its smallest
  # batch must stay out of the noise-limited regime, where S(B) leaves the hyperbola)
  s.batch_sizes = (8, 16, 32, 64, 128)
  s.target_drop = 0.03  # each branch trains until its eval loss is (1 - target_drop) x the start
  s.branch_max_tokens = 400_000  # token budget of a branch that never reaches its target
  s.sweep_max_tokens = 1_600_000  # and of a sweep run that never reaches the lowest target
  s.eval_sequences = 128  # the fixed eval set (identical in every run): this many sequences
  s.eval_every_sequences = 80  # evaluate every this many training sequences (>= 1 step)
  # branch LR vs the base's: gns (McCandlish's eps_max/(1 + B_noise/B), B_noise measured at
  # the branch point; sweep runs keep the base LR) | constant | sqrt | linear in B
  s.lr_rule = "gns"
  return s
