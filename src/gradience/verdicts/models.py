"""Typed verdict and plan results; ``to_json()`` (``model_dump(mode="json")``) is the one serialisation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NI = Literal["PASS", "FAIL", "INCONCLUSIVE"]
Outcome = Literal["binary", "continuous"]


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class SeedComparison(_Result):
    """One seed: variant vs probe on the same eval items (paired)."""

    label: str | None = Field(default=None, description="The seed, as the caller names it.")
    n_items: int
    probe_accuracy: float
    variant_accuracy: float
    delta: float = Field(description="variant accuracy − probe accuracy")
    ci_low: float = Field(description="Newcombe hybrid score interval (the verdict's)")
    ci_high: float
    bootstrap_ci_low: float = Field(description="paired percentile bootstrap, for comparison")
    bootstrap_ci_high: float
    confidence: float
    margin: float
    n_probe_only: int = Field(description="items the probe got right and the variant wrong")
    n_variant_only: int = Field(description="items the variant got right and the probe wrong")
    discordance: float = Field(description="fraction of items on which the two disagree")
    mcnemar_p: float = Field(description="McNemar exact two-sided p-value for 'no difference'")
    passed: bool = Field(description="point estimate: delta ≥ −margin")
    noninferiority: NI


class SeedDifference(_Result):
    """One seed of a continuous metric: the mean paired difference on the same eval items."""

    label: str | None = Field(default=None, description="The seed, as the caller names it.")
    n_items: int
    probe_mean: float = Field(description="the probe's mean metric, in the metric's units")
    variant_mean: float
    delta: float = Field(description="mean oriented difference: positive = the variant is better")
    sd: float = Field(description="SD of the per-item oriented differences")
    ci_low: float = Field(description="paired t interval of delta (N − 1 df)")
    ci_high: float
    confidence: float
    margin: float
    passed: bool = Field(description="point estimate: delta ≥ −margin")
    noninferiority: NI


class VariantVerdict(_Result):
    """A variant across seeds: the policy's point-estimate verdict and the non-inferiority verdict."""

    policy: str
    outcome: Outcome = Field(
        "binary", description="binary: 0/1 per item (accuracy); continuous: a real metric"
    )
    metric: str | None = Field(None, description="the continuous metric's name, e.g. nll")
    units: str | None = Field(None, description="its units, e.g. nats; None: accuracy fractions")
    higher_is_better: bool = Field(
        True,
        description="Δ is oriented so that positive = variant better (probe − variant when lower is better)",
    )
    margin: float = Field(description="in Δ's units: accuracy fractions, or the metric's own")
    confidence: float
    worst_seed_floor: float | None
    n_seeds: int
    n_distinct_seeds: int = Field(description="seeds whose outcomes differ; identical runs count once")
    seed_sd_given: float | None = Field(description="external seed SD used with one distinct seed")
    n_items: int
    k_passed: int = Field(description="seeds with delta ≥ −margin")
    k_required: int
    validated: str = Field(description='"k/n" seeds within the margin')
    quorum_met: bool
    floor_met: bool
    point_estimate_passed: bool = Field(description="upstream-compatible rule: quorum and floor met")
    noninferiority: NI
    noninferiority_p: float = Field(
        description="one-sided p of 'Δ ≤ −margin', inverting this verdict's interval (for multiplicity)"
    )
    passed: bool = Field(
        description="the policy's verdict (point estimate, plus NI when the policy requires it)"
    )
    mean_delta: float
    ci_low: float
    ci_high: float
    se: float = Field(description="standard error of mean_delta (eval items and seeds)")
    item_se: float = Field(description="part of se from eval-item sampling shared by all seeds")
    seed_se: float = Field(description="part of se from seed-to-seed variation")
    df: float | None = Field(
        description="Satterthwaite df with the seed-term cap (S−1)/w; None with one seed"
    )
    bootstrap_ci_low: float | None = Field(
        description="plain crossed (items × seeds) percentile bootstrap, for comparison (binary only)"
    )
    bootstrap_ci_high: float | None
    worst_delta: float
    mean_discordance: float | None = Field(description="mean fraction of items that flip (binary only)")
    per_seed: list[SeedComparison] | list[SeedDifference]
    explanation: str


class DeltaRates(_Result):
    """Probability of a PASS when the variant's true Δ is ``delta``."""

    delta: float
    noninferiority: float = Field(description="P(non-inferiority verdict = PASS)")
    point_rule: float = Field(description="P(the policy's point-estimate rule passes)")


class BudgetRates(_Result):
    """Operating characteristics of one budget (seeds × eval items) under the planner's model."""

    n_seeds: int
    eval_items: int
    item_se: float = Field(description="SE of mean Δ from item noise common to all seeds")
    seed_se: float = Field(description="SE of mean Δ from per-seed noise (training, unshared flips)")
    se: float
    df: float | None
    power: float = Field(description="P(non-inferiority PASS) at true Δ = 0")
    power_known_variance: float = Field(description="the same if the seed variance were known (normal test)")
    point_rule_power: float = Field(description="P(policy point-estimate rule passes) at true Δ = 0")
    false_pass: list[DeltaRates] = Field(
        description="P(PASS) at true Δ = −margin, −margin−0.005, −margin−0.01 (continuous: −1, −1.2, −1.4 margins)"
    )


class SeedsRow(_Result):
    n_seeds: int
    eval_items_needed: int | None = Field(
        description="smallest eval set reaching the target power; None: never"
    )


class PlanResult(_Result):
    """How many seeds and eval items a target power needs, and what a budget delivers."""

    margin: float = Field(description="in the metric's units: accuracy fractions unless item_sd is set")
    target_power: float
    baseline_acc: float | None = Field(description="0/1 metrics only")
    discordance: float | None = Field(description="0/1 metrics only")
    item_sd: float | None = Field(None, description="continuous metrics: SD of one item's paired difference")
    seed_sd: float
    item_share: float = Field(description="fraction of item noise common to all seeds (1: same items flip)")
    item_share_worst_case: bool = Field(
        False, description="item_share was unknown: the plan holds at every share; rates at the worst"
    )
    confidence: float
    policy: str
    given_seeds: int | None
    given_eval_items: int | None
    min_eval_items_any_seeds: int = Field(
        description="below this, no number of seeds reaches the target power"
    )
    by_seeds: list[SeedsRow]
    recommended_seeds: int | None
    recommended_eval_items: int | None
    reachable: bool = Field(description="the recommended or given budget reaches the target power")
    evaluated: BudgetRates | None
    notes: list[str]


class VariantEstimate(_Result):
    """One variant's planner inputs, estimated from its seeds' per-item results."""

    variant: str
    n_seeds: int
    n_items: int
    probe_accuracy: float
    delta: float
    discordance: float
    seed_sd: float = Field(description="seed-to-seed SD of Δ beyond item sampling (crossed ANOVA)")
    item_share: float = Field(description="share of the per-item noise common to all seeds")


class PlanEstimate(_Result):
    """Planner inputs measured on a bench (`gradience bench plan --from DIR`): the mean probe
    accuracy and the hardest variant's discordance, seed SD and item share."""

    baseline_acc: float
    discordance: float
    seed_sd: float
    item_share: float
    planned_for: str = Field(description="the variant whose inputs the plan uses (largest discordance)")
    variants: list[VariantEstimate]


class MeasuredPlanInputs(_Result):
    """Planner inputs measured on a finished bench, with what was left out and why."""

    source: str
    left_out: list[str] = Field(default_factory=list)
    estimate: PlanEstimate
