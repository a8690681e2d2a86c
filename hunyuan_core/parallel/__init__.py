"""Past one GPU: context parallelism (Ulysses) and CFG parallelism through diffusers' own engine.

`plans.py` holds the context-parallel plan of each transformer the pack runs, as data (the batch-safe
attention processors, `runtime/attention_mask.py`, keep the key-padding mask right on every rank);
`inputs.py` what each rank does to a transformer call's inputs and output; `checks.py` what is refused, and
why, before anything heavy runs; `launch.py` the process group, the rank's device and the session a run goes
through; `verify.py` checks on a machine that a split run gives one process's latents. Run it with torchrun:

    torchrun --nproc_per_node 2 -m hunyuan_core generate --model PATH ... --parallel ulysses=2
"""

from .checks import ParallelSetupError
from .launch import ParallelSession, ParallelSettings, ParallelStopped, parallel_session, quiet_rank
from .plans import PLANS, TransformerPlan, plan_for

__all__ = ["PLANS", "ParallelSession", "ParallelSettings", "ParallelSetupError", "ParallelStopped",
           "TransformerPlan", "parallel_session", "plan_for", "quiet_rank"]
