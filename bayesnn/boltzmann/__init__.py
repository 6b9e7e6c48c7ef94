"""Monotone deep Boltzmann machines (Feng, Winston and Kolter, TMLR 2023).

Categorical units with pairwise energy :math:`-E(z) = \\tfrac12 z^T W z + b^T z` and a
monotone parameterisation ``W = S^{1/2} (blockdiag(A^T A) - A^T A) S^{1/2}`` with
:math:`I - W \\succeq m I`, so the mean-field fixed point is unique for any clamping; fast
damped/accelerated solvers, implicit gradients, masked completion + classification
training, a plain mean-field baseline, Gibbs sampling and linear response.

The names below are the user-facing API. Building blocks are reached through the
submodules: :mod:`~bayesnn.boltzmann.dense` and :mod:`~bayesnn.boltzmann.conv`
(architectures and their couplings, whose methods ``matvec``, ``dense_matrix``,
``gibbs_kernel``... the rest of the subpackage calls), :mod:`~bayesnn.boltzmann.coupling`
(the protocol), :mod:`~bayesnn.boltzmann.parameterization`, :mod:`~bayesnn.boltzmann.model`,
:mod:`~bayesnn.boltzmann.solver`, :mod:`~bayesnn.boltzmann.prox`,
:mod:`~bayesnn.boltzmann.implicit`, :mod:`~bayesnn.boltzmann.train`,
:mod:`~bayesnn.boltzmann.sampling`, :mod:`~bayesnn.boltzmann.response`,
:mod:`~bayesnn.boltzmann.baseline`.
"""

from bayesnn.boltzmann.baseline import fixed_point_spread, multistart_mean_field
from bayesnn.boltzmann.conv import ConvLayer, ConvMDBMSpec, ConvRow
from bayesnn.boltzmann.coupling import MDBMParams
from bayesnn.boltzmann.dense import CategoricalLayer, MDBMSpec, fully_connected_spec
from bayesnn.boltzmann.model import (
    SolverConfig,
    bin_images,
    classify,
    complete,
    energy,
    infer,
    make_evidence,
)
from bayesnn.boltzmann.parameterization import (
    check_monotone,
    init_params,
    monotone_coupling,
    unconstrained_coupling,
)
from bayesnn.boltzmann.response import linear_response
from bayesnn.boltzmann.sampling import sample
from bayesnn.boltzmann.solver import ConvergenceError
from bayesnn.boltzmann.train import (
    TrainingConfig,
    TrainState,
    evaluate,
    fit,
    load_checkpoint,
    random_masks,
    save_checkpoint,
)

__all__ = [
    # architectures
    "CategoricalLayer",
    "MDBMSpec",
    "fully_connected_spec",
    "ConvLayer",
    "ConvRow",
    "ConvMDBMSpec",
    # parameters and monotone couplings
    "MDBMParams",
    "init_params",
    "monotone_coupling",
    "unconstrained_coupling",
    "check_monotone",
    # data and inference
    "bin_images",
    "make_evidence",
    "SolverConfig",
    "ConvergenceError",
    "infer",
    "complete",
    "classify",
    "energy",
    # training
    "TrainingConfig",
    "TrainState",
    "fit",
    "evaluate",
    "random_masks",
    "save_checkpoint",
    "load_checkpoint",
    # sampling and analysis
    "sample",
    "linear_response",
    "multistart_mean_field",
    "fixed_point_spread",
]
