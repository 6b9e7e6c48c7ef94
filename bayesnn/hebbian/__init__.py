"""Dense Hebbian networks: supervised / unsupervised P-body associative memories, their
Monte Carlo simulation (via :mod:`samplers.spins`) and replica-symmetric theory.

The names below are what a typical study calls; everything else lives in the submodules:
:mod:`~bayesnn.hebbian.data` (data generators, example-mean law),
:mod:`~bayesnn.hebbian.model` (networks, energies, fields, the spin-model adapter),
:mod:`~bayesnn.hebbian.observables` (magnetisations, overlaps, retrieval summaries, observers
for the chain runner), :mod:`~bayesnn.hebbian.theory` (RS solvers, closed forms,
signal-to-noise estimates, thresholds), :mod:`~bayesnn.hebbian.phase` (phase diagrams) and
:mod:`~bayesnn.hebbian.images` (binarised-image experiments).

Every function that draws random numbers takes a required ``rng_key`` as its first argument.

Agliari et al., "Dense Hebbian neural networks: a replica symmetric picture of supervised
learning" (arXiv 2212.00606) and "... of unsupervised learning" (arXiv 2211.14067);
Agliari, Alessandrelli, Barra, Ricci-Tersenghi, "Parallel learning by multitasking neural
networks" (arXiv 2308.04106).
"""

from . import data, images, model, observables, phase, theory
from .data import archetypes, dataset_entropy, make_dataset, quality_from_entropy
from .images import binarize, relax_and_classify
from .model import HebbianNetwork, hebbian_network, supervised_network, unsupervised_network
from .observables import mattis_magnetization, summarize_retrieval
from .phase import (
    phase_boundary,
    phase_diagram_m_r,
    phase_diagram_t_alpha,
    phase_diagram_t_rho,
    plot_phase_diagram,
)
from .simulate import SimulationResult, simulate
from .theory import (
    cascade_threshold,
    dense_critical_load,
    exact_law,
    gaussian_law,
    high_storage_rs,
    memorization_threshold,
    p2_critical_load,
    pad_law,
    solve_low_storage,
    transition_temperatures,
)

__all__ = [
    # submodules
    "data",
    "images",
    "model",
    "observables",
    "phase",
    "theory",
    # data and networks
    "make_dataset",
    "archetypes",
    "dataset_entropy",
    "quality_from_entropy",
    "HebbianNetwork",
    "hebbian_network",
    "supervised_network",
    "unsupervised_network",
    # Monte Carlo
    "simulate",
    "SimulationResult",
    "mattis_magnetization",
    "summarize_retrieval",
    # theory
    "exact_law",
    "gaussian_law",
    "pad_law",
    "solve_low_storage",
    "transition_temperatures",
    "high_storage_rs",
    "p2_critical_load",
    "dense_critical_load",
    "memorization_threshold",
    "cascade_threshold",
    # phase diagrams
    "phase_diagram_t_alpha",
    "phase_diagram_t_rho",
    "phase_diagram_m_r",
    "phase_boundary",
    "plot_phase_diagram",
    # images
    "binarize",
    "relax_and_classify",
]
