"""How fast does each model family train, how much of its step is the data path, and how close does
our loop come to a bare PyTorch loop of the same model?

For every registered family:

- ours: samples/s of a step as ``core.loop.train`` runs it: ``Trainer.train_step`` (the full
  optimiser step, data path included) with the loop's work around it (the step's rows split into
  batches, the phase, the autocast context, the finiteness check and running sums of the returned
  loss terms);
- the data path: the share of that step spent indexing the uint8 images on the device and
  converting them to float, plus the target gather where a family has targets. Goal: under 5%;
- bare, the limit: the same step as a minimal hand-written PyTorch loop on the same modules,
  optimisers, rows and random draws: ``x = images[rows].float() / 255``, the family's loss written
  out from its formula with plain torch ops, ``zero_grad(set_to_none=True)``, ``backward``,
  ``step``; no ``.item()``, no dict of terms, no autocast context, no GradScaler. The ratio is ours
  / bare in samples/s (= bare time / our time). Goal: >= 0.95.

The bare loop is checked before it is timed: one step of ours and one of bare, each from the same
weights, optimiser state, rows and seed, must give the same losses (``loss match``: their largest
relative difference, at most 1e-5) and the same weight updates (``step match``: the largest
difference of the weights after the step over the largest change ours made, at most 1e-3: Adam
magnifies rounding differences in tiny gradients). A mismatch is a bug in the bare loop, and the
row fails. (The bare losses reduce in the families' order, so on the CPU both are bit for bit
equal.) Ours and bare are then timed in alternating blocks from the same weights and seed (the
median of ``--rounds``), so machine noise hits both; on a loaded CPU machine ``--clock cpu`` (this
process's CPU time, not the wall clock's, which counts the time other processes hold the cores) is
steadier still. A family with phases is timed in its first (modular_ae: the warm-up), the phase
its bare loop writes. A family with no sensible bare loop says why in the table. Exit status 0
either way.

Run: python benchmarks/train_throughput.py [--steps 20] [--batch-size 64] [--device auto]
     [--rounds 3] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from trainables import FAMILIES, DatasetConfig, NonFiniteLoss, Trainer
from trainables.core.loop import _autocast, _phase_at
from trainables.core.view import as_tensor, resolve_device

GOAL = 0.05  # data-path share of a step
RATIO_GOAL = 0.95  # our samples/s over the bare loop's
MATCH_TOL = 1e-5  # relative difference of our and the bare loss on the same step
# ... and of their weight updates: Adam divides by the gradients' scale, so a rounding difference
# in a tiny gradient moves its weight by a visible fraction of a step.
STEP_TOL = 1e-3
# 3 shapes x 6 scales x 16 x 16 positions = 4608 images: small enough to render in seconds.
VIEW = DatasetConfig(subset={"orientation": 0, "posX": "0:32:2", "posY": "0:32:2"})
LOG_2PI = math.log(2 * math.pi)

StepFn = Callable[[np.ndarray, int], object]  # (one step's rows, step index) -> anything


# -- ours: a step as the loop runs it -----------------------------------------------------------
def _ours(trainer: Trainer) -> StepFn:
    """One step of ``core.loop.train``'s inner loop (loop.py, ``while position < ...``), reproduced
    rather than called: ``train`` runs a whole schedule and reports through a trial context
    (validation, checkpoint), which is no per-step cost. The same calls in the same order, with the
    loop's own helpers; left out are the per-epoch order (its slice is the ``rows`` given) and the
    integer bookkeeping (step, position, report due)."""
    cfg, k = trainer.cfg, trainer.batches_per_step
    phases = sorted(trainer.phases(), key=lambda p: p.start)
    sums: dict[str, float] = {}

    def step(rows: np.ndarray, index: int) -> dict[str, float]:
        batches = np.array_split(rows, k) if k > 1 else [rows]
        phase = _phase_at(phases, index)
        with _autocast(cfg.precision, trainer.device):
            terms = trainer.train_step(batches, phase, index)
        if trainer._scaled_steps:
            trainer.scaler.update()
            trainer._scaled_steps = 0
            trainer._stepped.clear()
        for key, value in terms.items():
            if not math.isfinite(value):
                raise NonFiniteLoss(f"non-finite loss term {key!r} = {value} at step {index + 1}")
            sums[key] = sums.get(key, 0.0) + value * len(batches[0])
        return terms

    return step


def _data_path(trainer: Trainer) -> StepFn:
    # What train_step reads from the device: every batch's images, and targets if it has any
    # (detected generically, so a new family with targets is measured the same way).
    targets = getattr(trainer, "targets", None)
    k = trainer.batches_per_step

    def run(rows: np.ndarray, index: int) -> object:
        batches = np.array_split(rows, k)
        out = [trainer.batch(b) for b in batches]
        if isinstance(targets, torch.Tensor):
            out += [targets[torch.as_tensor(b, device=targets.device)] for b in batches]
        return out

    return run


# -- bare: the same step by hand ------------------------------------------------------------------
@dataclass(frozen=True)
class Bare:
    """A family's step as a bare loop: ``step(rows, index)`` returns its loss tensors, named by
    ``terms`` after the family's ``train_step`` terms they equal (read by the check only)."""

    step: StepFn
    terms: tuple[str, ...] = ("loss",)


def _index(rows: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(rows, device=device)


def _pixels(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return images[index].float().div_(255.0)  # (B, C, 64, 64) in [0, 1], as Trainer.batch


# The losses sum over pixels or dimensions per sample, then average over the batch, as the
# families do (disentanglement_lib's convention): the same reduction order gives the same floats.
def _reconstruction(logits: torch.Tensor, x: torch.Tensor, bernoulli: bool) -> torch.Tensor:
    # Bernoulli on logits, or squared error of sigmoids
    if bernoulli:
        per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    else:
        per_pixel = (torch.sigmoid(logits) - x).pow(2)
    return per_pixel.flatten(1).sum(1).mean()


def _bare_ae(trainer) -> Bare:
    encoder, decoder = trainer.modules["encoder"], trainer.modules["decoder"]
    adam, images, device = trainer.optimizers["adam"], trainer.images, trainer.device
    bernoulli = trainer.cfg.reconstruction == "bernoulli"

    def step(rows, index):
        x = _pixels(images, _index(rows, device))
        loss = _reconstruction(decoder(encoder(x)), x, bernoulli)
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()
        return (loss,)

    return Bare(step)


# The Gaussian VAEs' regularisers, from mean, log-variance, sample (B, D), the KL summed over
# dimensions and averaged over the batch, and the step: each family's formula, written out.
Regulariser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


def _beta_vae(cfg) -> Regulariser:  # Higgins et al.: beta * KL
    beta = cfg.beta
    return lambda mean, logvar, z, kl, index: beta * kl


def _annealed(cfg) -> Regulariser:  # Burgess et al.: gamma * |KL - C|, C linear to c_max
    c_max, gamma, threshold = cfg.c_max, cfg.gamma, cfg.iteration_threshold

    def regulariser(mean, logvar, z, kl, index):
        return gamma * (kl - c_max * min(index / threshold, 1.0)).abs()

    return regulariser


def _beta_tc(cfg) -> Regulariser:  # Chen et al.: KL + (beta - 1) * minibatch-weighted TC
    weight = cfg.beta - 1.0

    def regulariser(mean, logvar, z, kl, index):
        log_m = math.log(len(z))
        # log q(z_id | x_j) for every pair (i, j): (M, M, D)
        pairs = -0.5 * ((z[:, None] - mean[None]).pow(2) * torch.exp(-logvar)[None] + logvar[None] + LOG_2PI)  # fmt: skip
        # q(z) and its marginals: the batch mixture (1/M) sum_j q(z | x_j)
        log_qz = torch.logsumexp(pairs.sum(2), dim=1) - log_m  # (M,)
        log_prod_qz = (torch.logsumexp(pairs, dim=1) - log_m).sum(1)  # (M,)
        return kl + weight * (log_qz - log_prod_qz).mean()

    return regulariser


def _dip(cfg) -> Regulariser:  # Kumar et al.: KL + covariance of the aggregate posterior to I
    lambda_od, lambda_d, type_ii = cfg.lambda_od, cfg.lambda_diagonal, cfg.dip_type == "ii"

    def regulariser(mean, logvar, z, kl, index):
        centred = mean - mean.mean(0, keepdim=True)
        cov = centred.T @ centred / len(mean)  # (D, D), biased
        if type_ii:
            cov = cov + torch.diag(logvar.exp().mean(0))
        diagonal = cov.diagonal()
        off = cov - torch.diag(diagonal)
        return kl + lambda_od * off.pow(2).sum() + lambda_d * (diagonal - 1).pow(2).sum()

    return regulariser


def _gaussian(regulariser_of: Callable[[object], Regulariser]) -> Callable[[Trainer], Bare]:
    def build(trainer) -> Bare:
        encoder, decoder = trainer.modules["encoder"], trainer.modules["decoder"]
        adam, images, device = trainer.optimizers["adam"], trainer.images, trainer.device
        bernoulli = trainer.cfg.reconstruction == "bernoulli"
        regulariser = regulariser_of(trainer.cfg)

        def step(rows, index):
            x = _pixels(images, _index(rows, device))
            mean, logvar = encoder(x).chunk(2, dim=1)
            z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)  # reparameterised
            kl = 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1).sum(1).mean()
            regularised = regulariser(mean, logvar, z, kl, index)
            loss = _reconstruction(decoder(z), x, bernoulli) + regularised
            adam.zero_grad(set_to_none=True)
            loss.backward()
            adam.step()
            return (loss,)

        return Bare(step)

    return build


def _bare_factor_vae(trainer) -> Bare:
    """Kim & Mnih: the VAE step with gamma * the discriminator's TC estimate on the first batch,
    then the discriminator's step: first batch's codes against the second's, each dimension
    permuted across the batch."""
    m, cfg = trainer.modules, trainer.cfg
    encoder, decoder, discriminator = m["encoder"], m["decoder"], m["discriminator"]
    adam, adam_d = trainer.optimizers["adam"], trainer.optimizers["discriminator"]
    images, device, b = trainer.images, trainer.device, cfg.batch_size
    bernoulli, gamma = cfg.reconstruction == "bernoulli", cfg.gamma
    real = torch.zeros(b, dtype=torch.long, device=device)  # class 0: from q(z)
    permuted_class = torch.ones(b, dtype=torch.long, device=device)  # 1: product of marginals

    def step(rows, index):
        x = _pixels(images, _index(rows[:b], device))
        mean, logvar = encoder(x).chunk(2, dim=1)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1).sum(1).mean()
        logits = discriminator(z)
        tc = (logits[:, 0] - logits[:, 1]).mean()
        loss = _reconstruction(decoder(z), x, bernoulli) + (kl + gamma * tc)
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()
        with torch.no_grad():
            mean2, logvar2 = encoder(_pixels(images, _index(rows[b:], device))).chunk(2, dim=1)
            z2 = mean2 + torch.exp(0.5 * logvar2) * torch.randn_like(mean2)
            shuffled = torch.stack(
                [z2[torch.randperm(b, device=device), d] for d in range(z2.shape[1])], dim=1
            )
        loss_d = 0.5 * (
            F.cross_entropy(discriminator(z.detach()), real)
            + F.cross_entropy(discriminator(shuffled), permuted_class)
        )
        adam_d.zero_grad(set_to_none=True)  # also drops the VAE step's grads left there
        loss_d.backward()
        adam_d.step()
        return loss, loss_d

    return Bare(step, ("loss", "discriminator"))


def _bare_multitask(trainer) -> Bare:
    """Sum over tasks of the per-task MSE of the heads on the shared encoder's code."""
    encoder, heads = trainer.modules["encoder"], list(trainer.modules["heads"])
    adam, images, targets, device = (
        trainer.optimizers["adam"], trainer.images, trainer.targets, trainer.device,
    )  # fmt: skip

    def step(rows, index):
        rows = _index(rows, device)
        codes = encoder(_pixels(images, rows))
        predicted = torch.cat([head(codes) for head in heads], dim=1)  # (B, tasks)
        loss = (predicted - targets[rows]).pow(2).mean(0).sum()
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()
        return (loss,)

    return Bare(step)


def _bare_task_probe(trainer) -> Bare:
    """The heads on the frozen codes (computed once in setup): sum over tasks of per-task MSE."""
    heads, codes = list(trainer.modules["heads"]), trainer.codes
    adam, targets, device = trainer.optimizers["adam"], trainer.tasks.values, trainer.device

    def step(rows, index):
        rows = _index(rows, device)
        predicted = torch.cat([head(codes[rows]) for head in heads], dim=1)
        loss = (predicted - targets[rows]).pow(2).mean(0).sum()
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()
        return (loss,)

    return Bare(step)


def _bare_decoder_probe(trainer) -> Bare:
    """The decoder on the frozen codes, reconstructing the images."""
    decoder, codes, images = trainer.modules["decoder"], trainer.codes, trainer.images
    adam, device = trainer.optimizers["adam"], trainer.device
    bernoulli = trainer.cfg.reconstruction == "bernoulli"

    def step(rows, index):
        rows = _index(rows, device)
        loss = _reconstruction(decoder(codes[rows]), _pixels(images, rows), bernoulli)
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()
        return (loss,)

    return Bare(step)


def _bare_modular_ae(trainer) -> Bare:
    """The warm-up phase (the one timed): reconstruction + the generator's non-saturating loss
    summed over partitions; then the partition-conditioned discriminator, N(0, I) against codes."""
    m, cfg = trainer.modules, trainer.cfg
    encoder, decoder, discriminator = m["encoder"], m["decoder"], m["discriminator"]
    adam, adam_d = trainer.optimizers["autoencoder"], trainer.optimizers["discriminator"]
    images, device, b = trainer.images, trainer.device, cfg.batch_size
    bernoulli, weight = cfg.reconstruction == "bernoulli", cfg.adversarial_weight
    k, p = len(trainer.factor_sizes), trainer.partition_size
    ids = torch.eye(k, device=device)  # one-hot partition index appended to each partition
    real = torch.ones(b, k, device=device)  # the discriminator's labels, made once
    fake = torch.zeros(b, k, device=device)

    def discriminate(codes):  # (B, K * P) -> (B, K)
        parts = torch.cat([codes.reshape(-1, k, p), ids.expand(len(codes), k, k)], dim=2)
        return discriminator(parts.reshape(-1, p + k)).reshape(-1, k)

    def step(rows, index):
        x = _pixels(images, _index(rows, device))
        z = encoder(x)
        generator = F.binary_cross_entropy_with_logits(discriminate(z), real, reduction="none")
        loss = _reconstruction(decoder(z), x, bernoulli) + weight * generator.sum(1).mean()
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()
        prior = torch.randn(b, k * p, device=device)
        loss_d = 0.5 * (
            F.binary_cross_entropy_with_logits(discriminate(prior), real)
            + F.binary_cross_entropy_with_logits(discriminate(z.detach()), fake)
        )
        adam_d.zero_grad(set_to_none=True)  # also drops the generator's grads left there
        loss_d.backward()
        adam_d.step()
        return loss, loss_d

    return Bare(step, ("loss", "discriminator"))


BARE: dict[str, Callable[[Trainer], Bare]] = {
    "ae": _bare_ae,
    "vae": _gaussian(_beta_vae),
    "annealed_vae": _gaussian(_annealed),
    "beta_tc_vae": _gaussian(_beta_tc),
    "dip_vae": _gaussian(_dip),
    "factor_vae": _bare_factor_vae,
    "multitask": _bare_multitask,
    "task_probe": _bare_task_probe,
    "decoder_probe": _bare_decoder_probe,
    "modular_ae": _bare_modular_ae,
}


# -- measuring ------------------------------------------------------------------------------------
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _timed(fn: StepFn, steps: list[np.ndarray], device: torch.device, clock: str) -> float:
    """Seconds for ``fn`` over ``steps`` (finished work only: CUDA runs asynchronously)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    now = CLOCKS[clock]
    sync()
    started = now()
    for index, rows in enumerate(steps):
        fn(rows, index)
    sync()
    return now() - started


def _check(
    trainer: Trainer, ours: StepFn, bare: Bare, rows: np.ndarray, index: int, restore
) -> tuple[float, float]:
    """One step of ours and one of bare, each from the same weights and seed: the largest relative
    difference of their loss terms, and of the weight updates they made (the largest difference
    of the weights after them over the largest change ours made)."""

    def weights() -> list[torch.Tensor]:
        state = trainer.modules.state_dict()
        return [t.detach().clone() for t in state.values() if t.is_floating_point()]

    restore()
    before = weights()
    theirs = ours(rows, index)
    after_ours = weights()
    restore()
    mine = bare.step(rows, index)
    after_bare = weights()
    loss = 0.0
    for name, value in zip(bare.terms, mine, strict=True):
        a, b = float(theirs[name]), value.item()
        loss = max(loss, abs(a - b) / max(abs(a), abs(b), 1e-12))
    update = max((a - w).abs().max().item() for a, w in zip(after_ours, before, strict=True))
    apart = max((a - b).abs().max().item() for a, b in zip(after_ours, after_bare, strict=True))
    return loss, apart / max(update, 1e-30)


@dataclass
class Row:
    """One family's measurements (ms per step: medians over the rounds)."""

    name: str
    samples_per_step: int = 0
    step_ms: float = math.nan
    data_ms: float = math.nan
    bare_ms: float = math.nan
    loss_match: float = math.nan  # relative difference of ours and bare losses on one step
    step_match: float = math.nan  # relative difference of their weight updates
    not_timed: str | None = None  # why nothing was measured
    no_bare: str | None = None  # why there is no bare loop
    note: str = ""  # what else the row needs said (the phase timed)

    @property
    def rate(self) -> float:
        return 1e3 * self.samples_per_step / self.step_ms

    @property
    def share(self) -> float:
        return self.data_ms / self.step_ms

    @property
    def ratio(self) -> float:
        """Our samples/s over the bare loop's."""
        return self.bare_ms / self.step_ms

    @property
    def matches(self) -> bool:
        return self.loss_match <= MATCH_TOL and self.step_match <= STEP_TOL


def bench(name: str, args, device: torch.device, view: DatasetConfig = VIEW) -> Row:
    """One family: our step, its data path and the bare loop, from the same seeded rows."""
    family = FAMILIES[name]
    if not family.trainer.trains:
        return Row(name, not_timed="nothing trains (an encoder brought from elsewhere)")
    extra = {"n_tasks": 10} if "n_tasks" in family.Config.model_fields else {}
    cfg = family.Config(batch_size=args.batch_size, pictures=False, device=str(device), **extra)
    data = family.prepare_data(view, [cfg])
    images = as_tensor(data["images"], device)
    torch.manual_seed(cfg.seed)
    trainer = family.trainer(cfg, images.shape[1], device)
    trainer.setup(data, images)
    trainer.modules.train()
    k = trainer.batches_per_step
    rng = np.random.default_rng(0)  # the same seeded rows for ours, bare and the data path
    train = np.asarray(data["train"])
    n = args.warmup + args.steps
    chunks = [rng.choice(train, k * args.batch_size, replace=False) for _ in range(n)]
    warmup, steps = chunks[: args.warmup], chunks[args.warmup :]
    row = Row(name, samples_per_step=k * args.batch_size)
    # Steps 0..steps-1 must stay in the first phase: the bare loops write that phase's step.
    phases = sorted(trainer.phases(), key=lambda p: p.start)
    later = [p.start for p in phases[1:]]
    if later:
        row.note = f"phase {phases[0].name!r}"
    ours, bare = _ours(trainer), None
    if name not in BARE:
        row.no_bare = "no bare loop written for this family"
    elif later and max(args.steps, args.warmup) > later[0]:
        row.no_bare = f"--steps reach phase {phases[1].name!r}; its bare loop is the first phase's"
    else:
        bare = BARE[name](trainer)

    # Warm up both (first-call allocations, kernel selection, the optimisers' state), then time
    # both from these weights and optimiser states with the same seed.
    for index, rows in enumerate(warmup):
        ours(rows, index)
        if bare is not None:
            bare.step(rows, index)
    snapshot = copy.deepcopy(trainer.state_dict())

    def restore() -> None:
        # A copy: optimisers adopt the loaded state tensors and update them in place.
        trainer.load_state_dict(copy.deepcopy(snapshot))
        torch.manual_seed(cfg.seed)  # the sampling families draw the same noise

    if bare is not None:
        # A late step of the first phase: AnnealedVAE's capacity is then not 0, so checked too.
        index = min([1000, *(start - 1 for start in later)])
        row.loss_match, row.step_match = _check(trainer, ours, bare, steps[0], index, restore)

    times: dict[str, list[float]] = {"ours": [], "bare": [], "data": []}
    fns = {"ours": ours, "bare": bare.step if bare else None, "data": _data_path(trainer)}
    for r in range(args.rounds):
        order = ["ours", "bare"] if r % 2 == 0 else ["bare", "ours"]  # neither always first
        for key in [*order, "data"]:
            if fns[key] is None:
                continue
            if key != "data":  # the data path changes no weights
                restore()
            times[key].append(_timed(fns[key], steps, device, args.clock))
    ms = {key: 1e3 * statistics.median(t) / args.steps for key, t in times.items() if t}
    row.step_ms, row.data_ms = ms["ours"], ms["data"]
    row.bare_ms = ms.get("bare", math.nan)
    return row


HEADER = (
    f"{'family':<14}{'samples/s':>10}{'ms/step':>9}{'data ms':>9}{'data %':>8}  <5% "
    f"{'bare ms':>9}{'ratio':>7}  >=0.95{'loss match':>11}{'step match':>11}"
)


def format_row(row: Row) -> str:
    if row.not_timed:
        return f"{row.name:<14}  not timed: {row.not_timed}"
    line = (
        f"{row.name:<14}{row.rate:>10.0f}{row.step_ms:>9.1f}{row.data_ms:>9.2f}"
        f"{100 * row.share:>8.2f}  {'pass' if row.share < GOAL else 'FAIL'}"
    )
    note = f"  ({row.note})" if row.note else ""
    if row.no_bare:
        return f"{line}  no bare loop: {row.no_bare}{note}"
    verdict = "pass" if row.ratio >= RATIO_GOAL and row.matches else "FAIL"
    match = f"{row.loss_match:>11.1e}{row.step_match:>11.1e}"
    mismatch = "" if row.matches else "  MISMATCH"
    return f"{line}{row.bare_ms:>9.1f}{row.ratio:>7.3f}  {verdict:<6}{match}{mismatch}{note}"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per block")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma list")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating ours / bare blocks; the median counts"
    )
    parser.add_argument(
        "--clock",
        default="wall",
        choices=list(CLOCKS),
        help="cpu: this process's CPU time, steadier than wall time on a loaded machine (CPU only)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown:
        p.error(f"unknown families {unknown}; known: {sorted(FAMILIES)}")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        p.error("--clock cpu times the CPU's work: use it with --device cpu")

    print(
        f"device={device} threads={args.threads} batch={args.batch_size} steps={args.steps} "
        f"warmup={args.warmup} rounds={args.rounds} clock={args.clock}"
    )
    print(HEADER)
    rows = []
    for name in names:
        rows.append(bench(name, args, device))
        print(format_row(rows[-1]), flush=True)
    timed = [r for r in rows if not r.not_timed]
    bare = [r for r in timed if not r.no_bare]
    print(
        f"{sum(r.share < GOAL for r in timed)}/{len(timed)} timed families meet the data-path goal "
        f"(< {100 * GOAL:.0f}% of a step); "
        f"{sum(r.ratio >= RATIO_GOAL and r.matches for r in bare)}/{len(bare)} with a bare loop "
        f"reach ratio >= {RATIO_GOAL} (ours / bare samples/s, median of {args.rounds})"
    )
    wrong = [r.name for r in bare if not r.matches]
    if wrong:
        print(f"bare loss differs from the family's (a bug in the bare loop): {wrong}")


if __name__ == "__main__":
    main()
