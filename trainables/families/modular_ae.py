"""Modular weakly-disentangled auto-encoder (Valenti & Bacciu, "Modular Representations for Weak
Disentanglement"; DESIGN.md section 4).

The code is K partitions of ``partition_size`` dimensions, partition k for relevant factor k (the
view's scored factors). Two phases:

``warmup`` (steps ``[0, warmup_steps)``): an adversarial auto-encoder. Loss = reconstruction
(Bernoulli on logits, summed over pixels) + ``adversarial_weight`` * the generator's non-saturating
loss summed over partitions; one discriminator, conditioned on the partition index (input
``[z_k, one-hot(k)]``), tells N(0, I) samples from the codes' partitions.

``full`` (from ``warmup_steps``): at its first step the adaptive prior is fitted (``fit_prior``:
per partition one Gaussian per factor value, from the encoded labelled subset, covariances times
``covariance_scale``) and then kept fixed. It lives in the ``prior`` module's buffers, so it is in
every checkpoint and in the saved weights. The discriminator now tells mixture samples (classes
uniform and independent per partition) from codes; a batch of labelled rows adds
``supervised_weight`` * their negative log-likelihood under their own class components (summed
over partitions, mean over rows): the weak supervision that ties component v of partition k to
value v of factor k. The relational learner (its own Adam; tanh MLP on ``[code, one-hot
relation]``, residual: output = code + MLP; ``relational_steps`` updates per step) trains on
sources drawn from the prior, as the paper's triples and as the evaluation (labelled codes were
tried too: where the encoder misplaces them they are noisy targets): target = the source with the
changed partition replaced by the prior mean of the target value's component; loss = MSE.
``prior_self_accuracy`` (how often the prior classifies its own samples back) is the ceiling of
the relation accuracy.

Evaluation (``test_metrics``): relation accuracy as in ``modular_parts.relation_accuracy``
(``relation_samples`` prior codes, a random relation each), with the acceptance threshold set to
the ``acceptance_quantile`` quantile of the prior's own samples' log-likelihood under their own
components (pooled over partitions; 0.01: a partition as typical as 99% of the prior's own samples
is accepted). It depends on the prior only, not on how well the labelled codes fit it. Then the
"converted" codes: each test code classified by the prior (most likely component per partition),
scored with DCI, MIG and SAP against the true factors (``converted_*``), plus the fraction of
test codes classified right (``converted_accuracy``, also per factor).

A run that never reaches ``full`` has its prior fitted at evaluation (relational learner untrained).

Pictures (``draw_pictures``, beside the shared ones): ``relations.png``, the relational learner on
encoded test images, decoded (``draw_relations``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from .. import losses
from ..core.config import TrainConfig
from ..core.evaluation import score
from ..core.trainer import Phase, Trainer
from ..data import load
from ..nets import ConvDecoder, ConvEncoder, MLPDiscriminator
from . import modular_pictures
from .modular_outputs import OUTPUTS, PICTURES
from .modular_parts import (
    Relation,
    RelationalLearner,
    relation_accuracy,
    relation_targets,
    relations_for,
)
from .modular_prior import MixturePrior, PriorBuffers, fit_prior

VAL_ROWS = 2048
CONVERTED_METRICS = ("dci", "mig", "sap")


class ModularAEConfig(TrainConfig):
    """Paper settings where it gives them (8-dim partitions, 3 x 1024 MLPs, 1000 labels, ReL batch
    128, covariance scale 0.1); Locatello et al.'s conv4 nets, batch 64 and Adam 1e-4 otherwise."""

    partition_size: int = Field(default=8, gt=0)
    latent_dim: int | None = Field(default=None, gt=0)
    """Total code size; when set it overrides ``partition_size`` (= latent_dim / K, must divide)."""
    relations: dict[str, Literal["cyclic", "saturating"]] | None = None
    """Factor name -> relation kind (a +1 and a -1 relation each); None: every factor, with its
    kind from ``relation_kinds``."""
    relation_kinds: dict[str, Literal["cyclic", "saturating"]] = Field(default_factory=dict)
    """Kinds by factor name for every scored factor when ``relations`` is None (unnamed: cyclic).
    A name the view does not score is ignored, so one map serves a study over several subsets
    (e.g. ``{scale: saturating, scale_bin: saturating}`` for dSprites v2 / v3 / v4)."""
    n_labels: int = Field(default=1000, gt=0)
    """Labelled subset, drawn once from the train split with ``seed`` (all of it if smaller)."""
    warmup_steps: int = Field(default=1000, ge=0)
    architecture: Literal["conv4", "conv6"] = "conv4"
    activation: Literal["relu", "tanh"] = "relu"
    reconstruction: Literal["bernoulli", "mse"] = "bernoulli"
    discriminator_hidden: tuple[int, ...] = (1024,) * 3
    relational_hidden: tuple[int, ...] = (1024,) * 3
    discriminator_lr: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """None: ``lr``."""
    relational_lr: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """None: ``lr``."""
    discriminator_betas: tuple[float, float] = (0.5, 0.9)
    adversarial_weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    supervised_weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    labelled_batch_size: int = Field(default=64, gt=0)
    relational_batch_size: int = Field(default=128, gt=0)
    """Prior samples per relational update (the paper's ReL batch)."""
    relational_steps: int = Field(default=1, ge=1)
    """Relational-learner updates per training step (the paper's ReL saw batches of 128 where the
    M-AE saw 1024); the ReL is cheap next to the conv nets."""
    covariance_scale: float = Field(default=0.1, gt=0, allow_inf_nan=False)
    acceptance_quantile: float = Field(default=0.01, gt=0, lt=1)
    relation_samples: int = Field(default=2000, gt=0)

    @model_validator(mode="after")
    def _betas_in_range(self) -> ModularAEConfig:
        if not all(0 < b < 1 for b in self.discriminator_betas):
            raise ValueError(
                f"discriminator_betas must lie in (0, 1), got {self.discriminator_betas}"
            )
        return self


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.full_like(logits, 1.0 if real else 0.0)
    return F.binary_cross_entropy_with_logits(logits, target)


def _check_relation_kinds(kinds: dict[str, str], dataset: str) -> None:
    """A name in ``relation_kinds`` that no view of the dataset could score is a typo: refuse it
    (it would leave that factor cyclic without a word)."""
    if not kinds or not dataset:
        return
    names = load(dataset).factor_names
    known = {*names, *(f"{n}_bin" for n in names)}
    unknown = sorted(set(kinds) - known)
    if unknown:
        raise ValueError(
            f"relation_kinds: {unknown} name no factor of {dataset}; known: {sorted(known)}"
        )


class ModularAE(Trainer):
    name = "modular_ae"
    Config = ModularAEConfig
    description = "modular weakly-disentangled AE (Valenti & Bacciu); relation accuracy"
    tiny_config = {"latent_dim": 4}  # one 1-dim partition per factor of the tiny view
    outputs = OUTPUTS
    pictures = PICTURES

    # -- modules: their shapes depend on the data view's factors, so they are built in setup ----
    @classmethod
    def build_modules(cls, cfg: ModularAEConfig, in_channels: int) -> dict[str, nn.Module]:
        return {}

    def _build(self, factor_names: list[str], factor_sizes: list[int]) -> None:
        cfg = self.cfg
        self.factor_names = list(factor_names)
        self.factor_sizes = [int(s) for s in factor_sizes]
        k = len(self.factor_sizes)
        if cfg.latent_dim is not None:
            if cfg.latent_dim % k:
                raise ValueError(
                    f"latent_dim={cfg.latent_dim} is not a multiple of the {k} factors"
                )
            self.partition_size = cfg.latent_dim // k
        else:
            self.partition_size = cfg.partition_size
        kinds = cfg.relations
        if kinds is None:
            pairs = zip(self.factor_names, self.factor_sizes, strict=True)
            kinds = {n: cfg.relation_kinds.get(n, "cyclic") for n, size in pairs if size > 1}
        self.relations: list[Relation] = relations_for(self.factor_names, self.factor_sizes, kinds)
        if not self.relations:
            raise ValueError("relations: name at least one factor with two or more values")
        p = self.partition_size
        code_dim = k * p
        modules = {
            "encoder": ConvEncoder(
                self.in_channels, code_dim, cfg.architecture, activation=cfg.activation
            ),
            "decoder": ConvDecoder(code_dim, self.in_channels, cfg.architecture, cfg.activation),
            "discriminator": MLPDiscriminator(p + k, cfg.discriminator_hidden, out_dim=1),
            "relational": RelationalLearner(code_dim, len(self.relations), cfg.relational_hidden),
            "prior": PriorBuffers(self.factor_sizes, p),
        }
        for name, module in modules.items():
            self.modules[name] = module.to(self.device)
        self._prior: MixturePrior | None = None
        # (K, K) one-hot partition indices, appended to each partition for the discriminator
        self._partition_ids = torch.eye(k, device=self.device)
        self._relation_factor = torch.tensor([r.factor for r in self.relations], device=self.device)

    @classmethod
    def from_saved(cls, cfg: Any, info: dict[str, Any], device: torch.device) -> ModularAE:
        trainer = cls(cfg, int(info["in_channels"]), device)
        trainer._build(info["factor_names"], info["factor_sizes"])
        return trainer

    def setup(self, data: dict[str, Any], images: torch.Tensor) -> None:
        super().setup(data, images)
        cfg = self.cfg
        _check_relation_kinds(self.cfg.relation_kinds, str(data.get("dataset", "")))
        self._build(data["factor_names"], data["factor_sizes"])
        train = np.asarray(data["train"])
        rng = np.random.default_rng(cfg.seed)
        n = min(cfg.n_labels, len(train))
        self.labelled = np.sort(rng.choice(train, n, replace=False))  # row indices
        self.labelled_classes = np.asarray(data["factors"])[self.labelled]  # (n, K)
        lr_d = cfg.discriminator_lr or cfg.lr
        lr_r = cfg.relational_lr or cfg.lr
        m = self.modules
        self.optimizers["autoencoder"] = torch.optim.Adam(
            [*m["encoder"].parameters(), *m["decoder"].parameters()], lr=cfg.lr
        )
        self.optimizers["discriminator"] = torch.optim.Adam(
            m["discriminator"].parameters(), lr=lr_d, betas=cfg.discriminator_betas
        )
        self.optimizers["relational"] = torch.optim.Adam(m["relational"].parameters(), lr=lr_r)

    def phases(self) -> list[Phase]:
        return [Phase("warmup", 0), Phase("full", self.cfg.warmup_steps)]

    # -- the prior ----------------------------------------------------------------------------
    @property
    def prior_fitted(self) -> bool:
        return bool(self.modules["prior"].fitted)

    @property
    def prior(self) -> MixturePrior:
        if not self.prior_fitted:
            raise RuntimeError("the adaptive prior is fitted at the first step of the full phase")
        if self._prior is None:
            self._prior = self.modules["prior"].prior()
        return self._prior

    @torch.no_grad()
    def labelled_codes(self) -> torch.Tensor:
        """Codes of the labelled subset (N, K * P)."""
        chunks = [
            self.encode(self.batch(self.labelled[i : i + 512]))[0]
            for i in range(0, len(self.labelled), 512)
        ]
        return torch.cat(chunks)

    def fit_prior(self) -> None:
        """The adaptive prior from the encoded labelled subset (``modular_parts.fit_prior``)."""
        prior = fit_prior(
            self.labelled_codes(),
            self.labelled_classes,
            self.factor_sizes,
            self.partition_size,
            covariance_scale=self.cfg.covariance_scale,
            factor_names=self.factor_names,
        )
        self.modules["prior"].store(prior)
        self._prior = None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)  # the prior's buffers are in the modules' state
        self._prior = None

    # -- training -----------------------------------------------------------------------------
    def _discriminate(self, codes: torch.Tensor) -> torch.Tensor:
        """Discriminator logits of every partition: codes (B, K * P) -> (B, K)."""
        k, p = len(self.factor_sizes), self.partition_size
        parts = codes.reshape(-1, k, p)  # (B, K, P)
        ids = self._partition_ids.expand(parts.shape[0], k, k)  # (B, K, K)
        logits = self.modules["discriminator"](torch.cat([parts, ids], -1).reshape(-1, p + k))
        return logits.reshape(-1, k)  # (B, K)

    def _prior_samples(self, n: int, full: bool) -> torch.Tensor:
        if not full:
            return torch.randn(n, len(self.factor_sizes) * self.partition_size, device=self.device)
        prior = self.prior
        return prior.sample(prior.sample_classes(n))  # global RNG: checkpointed by the loop

    def relational_targets(
        self, prior: MixturePrior, codes: torch.Tensor, classes: np.ndarray, ids: torch.Tensor
    ) -> torch.Tensor:
        """Sources ``codes`` (N, K * P) of ``classes`` (N, K) under relations ``ids`` (N,): the same
        codes with the changed partition set to the prior mean of its target value."""
        targets = relation_targets(classes, ids, self.relations)  # (N, K)
        k, p = len(self.factor_sizes), self.partition_size
        out = codes.detach().reshape(-1, k, p).clone()  # (N, K, P)
        factor = self._relation_factor[ids]  # (N,)
        value = torch.as_tensor(targets, device=self.device).gather(1, factor[:, None])[:, 0]
        out[torch.arange(len(out), device=self.device), factor] = prior.means[factor, value].to(out)
        return out.reshape(-1, k * p)

    def _relational_update(self, prior: MixturePrior) -> float:
        """One Adam step of the relational learner on prior samples (the paper's triples); returns
        its loss."""
        n = self.cfg.relational_batch_size
        source_classes = prior.sample_classes(n)
        sources = prior.sample(source_classes)  # (n, K * P)
        ids = torch.randint(len(self.relations), (n,), device=self.device)
        target = self.relational_targets(prior, sources, source_classes, ids)
        loss = F.mse_loss(self.modules["relational"](sources, ids), target)
        optimizer = self.optimizers["relational"]
        self.backward_step(loss, optimizer)
        return loss.item()

    def train_step(self, batches: list[np.ndarray], phase: str, step: int) -> dict[str, float]:
        cfg, m = self.cfg, self.modules
        full = phase == "full"
        if full and not self.prior_fitted:
            self.fit_prior()
        x = self.batch(batches[0])
        z = m["encoder"](x)  # (B, K * P)
        reconstruction = losses.reconstruction_loss(m["decoder"](z), x, cfg.reconstruction)
        generator = F.binary_cross_entropy_with_logits(
            self._discriminate(z), torch.ones(len(z), len(self.factor_sizes), device=self.device),
            reduction="none",
        ).sum(1).mean()  # fmt: skip
        loss = reconstruction + cfg.adversarial_weight * generator
        terms = {"reconstruction": reconstruction.item(), "generator": generator.item()}
        if full:
            prior = self.prior
            pick = torch.randint(len(self.labelled), (cfg.labelled_batch_size,)).numpy()
            z_labelled = m["encoder"](self.batch(self.labelled[pick]))  # (L, K * P)
            classes = self.labelled_classes[pick]  # (L, K)
            log_p = prior.log_likelihood(z_labelled)  # (L, K, V)
            own = torch.as_tensor(classes, device=self.device)[:, :, None]
            supervised = -log_p.gather(2, own)[:, :, 0].sum(1).mean()
            loss = loss + cfg.supervised_weight * supervised
            terms["supervised"] = supervised.item()
        optimizer = self.optimizers["autoencoder"]
        self.backward_step(loss, optimizer)

        real = self._prior_samples(len(z), full)
        discriminator = 0.5 * (
            _bce(self._discriminate(real), True) + _bce(self._discriminate(z.detach()), False)
        )
        optimizer = self.optimizers["discriminator"]
        self.backward_step(discriminator, optimizer)  # also drops the generator's grads left here
        terms["discriminator"] = discriminator.item()
        total = loss.item()

        if full:
            steps = cfg.relational_steps
            terms["relational"] = sum(self._relational_update(prior) for _ in range(steps)) / steps
            total += terms["relational"]
        return {"loss": total, **terms}

    # -- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def _split(self, index: np.ndarray) -> tuple[dict[str, float], torch.Tensor]:
        """Reconstruction loss and pixel MSE over ``index``, and the codes (eval mode)."""
        if len(index) == 0:
            raise ValueError("cannot evaluate an empty split")
        self.modules.eval()
        total, squared, codes = 0.0, 0.0, []
        for start in range(0, len(index), 512):
            x = self.batch(index[start : start + 512])
            z = self.modules["encoder"](x)
            logits = self.modules["decoder"](z)
            total += losses.reconstruction_loss(logits, x, self.cfg.reconstruction).item() * len(x)
            squared += ((torch.sigmoid(logits) - x) ** 2).mean(dim=(1, 2, 3)).sum().item()
            codes.append(z)
        n = len(index)
        return {"reconstruction": total / n, "mse": squared / n}, torch.cat(codes)

    def _classified(self, codes: torch.Tensor, factors: np.ndarray) -> dict[str, float]:
        predicted, _ = self.prior.classify(codes, -math.inf)  # (N, K)
        right = predicted == np.asarray(factors)
        result = {"accuracy": float(right.all(1).mean())}
        for k, name in enumerate(self.factor_names):
            result[f"accuracy_{name}"] = float(right[:, k].mean())
        return result

    def validate(self, data: dict[str, Any]) -> dict[str, float]:
        rows = np.asarray(data["val"])[:VAL_ROWS]
        result, codes = self._split(rows)
        metrics = {"val/reconstruction": result["reconstruction"], "val/mse": result["mse"]}
        if self.prior_fitted:
            accuracy = self._classified(codes, np.asarray(data["factors"])[rows])["accuracy"]
            metrics["val/converted_accuracy"] = accuracy
        return metrics

    def acceptance_threshold(self, generator: torch.Generator) -> tuple[float, float]:
        """The ``acceptance_quantile`` quantile of the log-likelihood of the prior's own samples
        under their own components, pooled over partitions; and the fraction of those samples
        whose every partition the prior classifies back to its own component (how separated the
        components are: the ceiling of the relation accuracy)."""
        prior = self.prior
        classes = prior.sample_classes(self.cfg.relation_samples, generator)  # (n, K)
        log_p = prior.log_likelihood(prior.sample(classes, generator))  # (n, K, V)
        own = log_p.gather(2, torch.as_tensor(classes, device=log_p.device)[:, :, None])
        threshold = float(
            torch.quantile(own.flatten().double().cpu(), self.cfg.acceptance_quantile)
        )
        separated = (log_p.argmax(-1).cpu().numpy() == classes).all(1).mean()
        return threshold, float(separated)

    @torch.no_grad()
    def test_metrics(self, data: dict[str, Any]) -> dict[str, float]:
        cfg = self.cfg
        self.modules.eval()
        if not self.prior_fitted:  # training ended within the warm-up
            self.fit_prior()
        test = np.asarray(data["test"])
        result, codes = self._split(test)
        out = {"reconstruction_loss": result["reconstruction"], "reconstruction_mse": result["mse"]}
        prior = self.prior
        generator = torch.Generator(device=prior.means.device).manual_seed(cfg.seed)
        threshold, separation = self.acceptance_threshold(generator)
        scores = relation_accuracy(
            prior,
            lambda z, ids: self.modules["relational"](z, ids),
            self.relations,
            cfg.relation_samples,
            threshold=threshold,
            generator=generator,
        )
        out.update(
            relation_accepted=scores.accepted,
            relation_accuracy=scores.accuracy,
            relation_chance=scores.chance,
            relation_threshold=threshold,
            prior_self_accuracy=separation,
        )
        out.update(
            {f"relation_accuracy_{metric_name(k)}": v for k, v in scores.per_relation.items()}
        )
        # Converted codes: the prior's class of each partition, scored as a representation.
        factors = np.asarray(data["factors"])[test]
        out.update({f"converted_{k}": v for k, v in self._classified(codes, factors).items()})
        predicted, _ = prior.classify(codes, -math.inf)  # (N, K)
        rng = np.random.default_rng(cfg.seed)
        n_train = cfg.metric_train_points
        sample = rng.integers(0, len(test), n_train + cfg.metric_test_points)  # with replacement
        converted = score(
            predicted[sample].astype(np.float64),
            factors[sample],
            CONVERTED_METRICS,
            n_train=n_train,
            rng=rng,
            n_jobs=torch.get_num_threads(),
            mode=cfg.metric_mode,
        )
        out.update({f"converted_{k}": float(v) for k, v in converted.items() if "seconds" not in k})
        return out

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.modules["encoder"](x), None

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.modules["decoder"](codes))

    def relate(self, codes: torch.Tensor, relation_ids: torch.Tensor) -> torch.Tensor:
        """The relational learner's output: codes (N, K * P) changed by relations (N,)."""
        return self.modules["relational"](codes, relation_ids)

    # -- pictures -----------------------------------------------------------------------------
    def draw_pictures(self, data: dict[str, Any], directory: Path) -> list[Path]:
        """The family's own pictures, beside the shared ones (UMAP, reconstructions, traversals)."""
        return [modular_pictures.draw_relations(self, data, Path(directory) / "relations.png")]

    def saved_info(self) -> dict[str, Any]:
        return {
            "partition_size": self.partition_size,
            "relations": [r.name for r in self.relations],
        }


def metric_name(relation: str) -> str:
    """``posX+1`` -> ``posX_plus1`` (MLflow refuses ``+`` in metric names)."""
    return relation.replace("+", "_plus").replace("-", "_minus")
