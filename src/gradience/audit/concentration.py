"""Concentration of an adapter's update over its layers: which layers did the adapting.

Each layer's share is p_i = ‖ΔW_i‖²_F / Σ_j ‖ΔW_j‖²_F (ΔW with the PEFT scale, from the exact
spectra). The Herfindahl–Hirschman index HHI = Σ p_i² runs from 1/n (every layer equal) to 1 (one
layer holds everything); 1/HHI is the effective number of layers. Energy, not the norm itself:
squared Frobenius norms of disjoint blocks add, so shares of the whole-model update sum to one.
"""

from __future__ import annotations

from gradience.audit.report import Concentration, LayerAudit, TypeConcentration

TOP_K = 5


def _hhi(energies: list[float]) -> float:
    total = sum(energies)
    return sum((e / total) ** 2 for e in energies) if total > 0 else 0.0


def concentration(layers: list[LayerAudit], top_k: int = TOP_K) -> Concentration:
    """Also sets each layer's `energy_share`."""
    energy = {la.name: la.frob_norm_scaled**2 for la in layers}
    total = sum(energy.values())
    for la in layers:
        la.energy_share = energy[la.name] / total if total > 0 else 0.0
    hhi = _hhi(list(energy.values()))
    by_type = {}
    for kind in sorted({la.module_type for la in layers}):
        members = [energy[la.name] for la in layers if la.module_type == kind]
        h = _hhi(members)
        by_type[kind] = TypeConcentration(
            n_layers=len(members),
            energy_share=sum(members) / total if total > 0 else 0.0,
            hhi=h,
            effective_layers=1 / h if h > 0 else 0.0,
        )
    top = sorted(layers, key=lambda la: (-(la.energy_share or 0.0), la.name))[:top_k]
    return Concentration(
        total_energy=total,
        hhi=hhi,
        effective_layers=1 / hhi if hhi > 0 else 0.0,
        by_type=by_type,
        top_layers={la.name: float(la.energy_share or 0.0) for la in top},
    )
