"""What happens to a transformer call's inputs on every rank before diffusers' hooks split its sequence, and
to its output after they gathered it: plain torch forward hooks on the transformer, which run outside its
`forward` (diffusers' own hooks, context-parallel and offloading, live inside it).

Before the call:
1. Every tensor input is rank 0's (a broadcast): the replicated inputs (latents, text, timesteps) must be
   equal on every rank, and text encoders on different devices need not agree to the last bit.
2. With cfg=2, each half of the ranks keeps its half of the rows: with batched classifier-free guidance the
   conditional rows come first and the unconditional rows second (`runtime/sampling.py`), so each group runs
   one of them. A call whose rows do not divide (a step without guidance) runs whole on both groups.
3. With a sequence split, the text side is padded with masked tokens to a multiple of the split (1.5's text
   side is 1985 tokens) — exact: the refiner pools and attends with the mask, and the transformer puts the
   masked tokens behind the valid ones and masks them as keys — and the image tokens are checked (diffusers'
   sharder would only assert).
4. With a sequence split, blocks that treat the leading image tokens apart (HunyuanVideo-I2V's start frame,
   the plan's `leading_tokens`) get, on rank r, how many of its own share of the tokens are leading ones.
After the call (cfg=2): the two groups' rows are gathered back, in order.
"""

from __future__ import annotations

import inspect

import torch
import torch.distributed as dist
import torch.nn.functional as F
from diffusers.hooks.context_parallel import _get_submodule_by_name

from .checks import ParallelSetupError, image_tokens
from .plans import TransformerPlan


class TransformerInputHooks:
    def __init__(self, plan: TransformerPlan, shards: int, shard: int, cfg_group, cfg_rank: int, cfg: int):
        self.plan, self.shards, self.shard = plan, shards, shard
        self.cfg_group, self.cfg_rank, self.cfg = cfg_group, cfg_rank, cfg
        self.split_rows = False
        self.local_image_tokens = 0

    def attach(self, transformer: torch.nn.Module) -> None:
        """Hooks for the model's lifetime (a parallel run's model is released with its session)."""
        transformer.register_forward_pre_hook(self.before, with_kwargs=True, prepend=True)
        transformer.register_forward_hook(self.after, with_kwargs=True)
        if self.shards > 1:
            for path, parameter in self.plan.leading_token_counts(transformer.config).items():
                modules = _get_submodule_by_name(transformer, path)
                for module in modules if isinstance(modules, list) else [modules]:
                    module.register_forward_pre_hook(self._local_leading_tokens(module, parameter), with_kwargs=True)

    def before(self, module, args, kwargs):
        if args:
            raise RuntimeError("Under --parallel the transformer takes its inputs as keywords (as the sampler does).")
        kwargs = dict(kwargs)
        for name, value in kwargs.items():
            if isinstance(value, torch.Tensor):
                value = value.clone(memory_format=torch.contiguous_format)
                dist.broadcast(value, src=0)
                kwargs[name] = value
        rows = kwargs["hidden_states"].shape[0]
        self.split_rows = self.cfg > 1 and rows % self.cfg == 0
        if self.split_rows:
            for name, value in kwargs.items():
                if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == rows:
                    kwargs[name] = value.chunk(self.cfg)[self.cfg_rank]
        if self.shards > 1:
            self.local_image_tokens = self._check_image_tokens(module, kwargs["hidden_states"]) // self.shards
            self._pad_text(kwargs)
        return (), kwargs

    def _local_leading_tokens(self, module: torch.nn.Module, parameter: str):
        """A pre-hook giving `module` this rank's count of leading tokens in place of the whole sequence's:
        the rank holds image tokens `[shard * n, (shard + 1) * n)` of the sequence (diffusers' equal split)."""
        index = list(inspect.signature(type(module).forward).parameters).index(parameter) - 1  # without self

        def localise(module, args, kwargs):
            n, start = self.local_image_tokens, self.shard * self.local_image_tokens
            if parameter in kwargs:
                kwargs = {**kwargs, parameter: min(max(kwargs[parameter] - start, 0), n)}
            elif index < len(args):
                args = (*args[:index], min(max(args[index] - start, 0), n), *args[index + 1:])
            return args, kwargs

        return localise

    def after(self, module, args, kwargs, output):
        if not self.split_rows:
            return output
        sample = output[0] if isinstance(output, tuple) else output.sample
        sample = sample.contiguous()
        pieces = [torch.empty_like(sample) for _ in range(self.cfg)]
        dist.all_gather(pieces, sample, group=self.cfg_group)
        gathered = torch.cat(pieces)
        if isinstance(output, tuple):
            return (gathered, *output[1:])
        output.sample = gathered
        return output

    def _check_image_tokens(self, module, hidden: torch.Tensor) -> int:
        tokens = image_tokens(module.config, tuple(hidden.shape))
        if tokens % self.shards:
            raise ParallelSetupError(
                f"Latents {tuple(hidden.shape[-3:])} make {tokens} image tokens, which {self.shards} processes "
                "cannot share equally; choose frames, width and height whose tokens divide (the CLI suggests some)."
            )
        return tokens

    def _pad_text(self, kwargs: dict) -> None:
        total = sum(kwargs[name].shape[1] for name in self.plan.text_inputs if kwargs.get(name) is not None)
        extra = (-total) % self.shards
        if extra:
            text, mask = self.plan.padded_text
            kwargs[text] = F.pad(kwargs[text], (0, 0) * (kwargs[text].ndim - 2) + (0, extra))
            kwargs[mask] = F.pad(kwargs[mask], (0, extra))
