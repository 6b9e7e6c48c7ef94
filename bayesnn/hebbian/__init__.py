"""Dense Hebbian networks: supervised / unsupervised P-body associative memories, their
Monte Carlo simulation (via :mod:`samplers.spins`) and replica-symmetric theory.

Agliari et al., "Dense Hebbian neural networks: a replica symmetric picture of supervised
learning" (arXiv 2212.00606) and "... of unsupervised learning" (arXiv 2211.14067);
Agliari, Alessandrelli, Barra, Ricci-Tersenghi, "Parallel learning by multitasking neural
networks" (arXiv 2308.04106).
"""

from . import data, model, observables, theory
from .data import (
    HebbianDataset,
    archetypes,
    dataset_entropy,
    example_mean_law,
    make_dataset,
    noisy_examples,
    quality_from_entropy,
    second_moment,
)
from .model import (
    HebbianNetwork,
    delta_energy,
    energy,
    hebbian_network,
    local_fields,
    overlaps,
    spin_model,
    supervised_network,
    unsupervised_network,
)
from .observables import (
    RetrievalSummary,
    edwards_anderson_overlap,
    mattis_magnetization,
    replica_overlap,
    retrieved_pattern,
    summarize_retrieval,
)
from .simulate import SimulationResult, simulate
from .theory import (
    LowStorageSolution,
    cascade_amplitudes,
    cascade_stability_margin,
    cascade_threshold,
    dense_critical_load,
    exact_law,
    gaussian_law,
    high_storage_rs,
    memorization_threshold,
    p2_critical_load,
    p2_zero_temperature,
    refined_memorization_threshold,
    snr_magnetization_supervised,
    snr_magnetization_unsupervised,
    solve_low_storage,
    transition_temperatures,
    unsupervised_energies,
    unsupervised_variance_inflation,
    zero_temperature_magnetization,
)

__all__ = [
    "data",
    "model",
    "observables",
    "theory",
    "HebbianDataset",
    "archetypes",
    "dataset_entropy",
    "example_mean_law",
    "make_dataset",
    "noisy_examples",
    "quality_from_entropy",
    "second_moment",
    "HebbianNetwork",
    "delta_energy",
    "energy",
    "hebbian_network",
    "local_fields",
    "overlaps",
    "spin_model",
    "supervised_network",
    "unsupervised_network",
    "RetrievalSummary",
    "edwards_anderson_overlap",
    "mattis_magnetization",
    "replica_overlap",
    "retrieved_pattern",
    "summarize_retrieval",
    "SimulationResult",
    "simulate",
    "LowStorageSolution",
    "cascade_amplitudes",
    "cascade_stability_margin",
    "cascade_threshold",
    "dense_critical_load",
    "exact_law",
    "gaussian_law",
    "high_storage_rs",
    "memorization_threshold",
    "p2_critical_load",
    "p2_zero_temperature",
    "refined_memorization_threshold",
    "snr_magnetization_supervised",
    "snr_magnetization_unsupervised",
    "solve_low_storage",
    "transition_temperatures",
    "unsupervised_energies",
    "unsupervised_variance_inflation",
    "zero_temperature_magnetization",
]
