"""Chains over all devices of all processes: placement, padding and gathering.

The chain runner (:func:`samplers.runner.run`) computes every chain of a run in one SPMD
program whose leaves carry a leading chain axis. :class:`ChainMesh` lays that axis out over a
one-dimensional mesh of **all** devices, ``jax.devices()``, which under multi-controller JAX
(``jax.distributed.initialize``) are the devices of every process; each process then computes
only the chains on its own devices, and :func:`to_host` gathers results to every process as
NumPy arrays.

Contract of the placement:

* every process holds the same host-side values (the same initial state, chain keys and data,
  computed from the same arguments); :meth:`ChainMesh.shard` and :meth:`ChainMesh.replicate`
  build global arrays from them with :func:`jax.make_array_from_callback`, so each process
  transfers only its own shards (``jax.device_put`` to a sharding that spans other processes'
  devices is not allowed);
* the random numbers of a chain depend on its **global** chain index only (e.g. chain ``c``
  uses ``fold_in(rng_key, c)``), so a run sharded over any number of devices and processes
  gives the draws of a single-device run with the same key (up to the floating-point
  differences of code compiled for another batch size);
* a chain count ``C`` that does not divide the device count ``D`` runs ``k = ceil(C / D)``
  chains per device on as few devices as hold them, padded with at most ``k - 1`` extra
  chains, with an :class:`UnevenChainsWarning` (see :class:`ChainMesh`): padding chain
  ``c >= C`` is an exact copy of chain ``c mod C`` (state and keys), so it neither changes
  nor outlives the real chains (it diverges exactly when its original does) and
  :meth:`ChainMesh.unpad` drops it.

The mesh is built with :class:`jax.sharding.Mesh` and :class:`jax.sharding.NamedSharding`
(the chain axis is named ``"chain"``); nothing here depends on the sampler.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "ChainMesh",
    "UnevenChainsWarning",
    "barrier",
    "chain_mesh",
    "put",
    "spans_devices",
    "to_host",
]

AXIS = "chain"


class UnevenChainsWarning(UserWarning):
    """The number of chains does not divide the number of devices: padding chains are run."""


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def put(x, sharding, prepare=None):
    """A global array with ``sharding`` from the same value ``x`` held by every process.

    The multi-process counterpart of ``jax.deviceput(x, sharding)``: each process places
    only the shards of its own devices. ``prepare`` (e.g. padding) is applied first. Typed
    PRNG keys travel as their raw key data and are wrapped again on the devices.
    """
    prepare = prepare or (lambda a: a)
    if _is_key(x):
        impl = jax.random.key_impl(x)
        data = put(jax.random.key_data(x), sharding, prepare)
        return jax.random.wrap_key_data(data, impl=impl)
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        # Already global (e.g. the state of a previous sharded run): reshard in one program.
        return jax.jit(prepare, out_shardings=sharding)(x)
    value = prepare(jnp.asarray(x))
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def _interleave(devices):
    """Devices ordered first device of every process, second of every process, ...: any
    prefix of the list is spread as evenly as possible over the processes."""
    by_process: dict[int, list] = {}
    for device in devices:
        by_process.setdefault(device.process_index, []).append(device)
    rank = {id(d): r for group in by_process.values() for r, d in enumerate(group)}
    return sorted(devices, key=lambda d: (rank[id(d)], d.process_index))


class ChainMesh:
    """A one-dimensional device mesh for the chain axis, padded when the chains do not divide.

    With ``C`` chains on ``D`` devices every device used holds ``k = ceil(C / D)`` chains, on
    ``d = ceil(C / k)`` devices (at least one per process), and ``d * k - C < k`` padding
    chains fill the last device: the fewest chains per device (the wall time), then the
    fewest chains computed and dropped. E.g. 6 chains on 8 devices use 6 devices, 9 chains
    use 5 devices with 2 chains each (one of them padding). When ``d < D``, the devices used
    alternate between processes.

    Parameters
    ----------
    num_chains
        Number of chains ``C`` of the run.
    devices
        Devices to use (default ``jax.devices()``: all devices of all processes).
    """

    def __init__(self, num_chains: int, devices=None):
        if (
            isinstance(num_chains, bool)
            or not isinstance(num_chains, int | np.integer)
            or num_chains < 1
        ):
            raise ValueError(f"num_chains must be a positive integer, got {num_chains!r}")
        devices = list(jax.devices() if devices is None else devices)
        if not devices:
            raise ValueError("devices is empty")
        self.num_chains = int(num_chains)
        self.num_available = len(devices)
        per_device = -(-self.num_chains // len(devices))
        num_processes = len({d.process_index for d in devices})
        used = max(-(-self.num_chains // per_device), num_processes)
        self.chains_per_device = per_device
        self.num_devices = used
        self.num_padded = used * per_device
        self.mesh = Mesh(np.array(_interleave(devices)[:used]), (AXIS,))
        self.chain_sharding = NamedSharding(self.mesh, PartitionSpec(AXIS))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())

    @property
    def num_padding(self) -> int:
        """Padding chains computed and dropped: ``num_padded - num_chains``."""
        return self.num_padded - self.num_chains

    @property
    def num_idle(self) -> int:
        """Devices left without chains."""
        return self.num_available - self.num_devices

    def _pad(self, x):
        if self.num_padding == 0:
            return x
        index = jnp.arange(self.num_padded) % self.num_chains
        return jnp.take(x, index, axis=0)

    def shard(self, tree):
        """Lay out the leading (chain) axis of every leaf over the mesh, padding it first.

        Every leaf needs the leading axis ``num_chains``; padding chain ``c`` copies chain
        ``c mod num_chains``.
        """
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != self.num_chains:
                raise ValueError(
                    f"leaf {jax.tree_util.keystr(path)} of shape {jnp.shape(leaf)} has no "
                    f"leading chain axis of size {self.num_chains}"
                )
        return jax.tree.map(lambda x: put(x, self.chain_sharding, self._pad), tree)

    def replicate(self, tree):
        """A copy of every leaf on every device of the mesh (e.g. the data)."""
        return jax.tree.map(lambda x: put(x, self.replicated), tree)

    def unpad(self, tree, axis: int = 0):
        """Drop the padding chains along ``axis`` (NumPy or JAX leaves; ``None`` passes)."""
        if self.num_padding == 0:
            return tree
        index = (slice(None),) * axis + (slice(0, self.num_chains),)
        return jax.tree.map(lambda x: x[index], tree)


def chain_mesh(num_chains: int, shard: bool = True, devices=None) -> ChainMesh | None:
    """The :class:`ChainMesh` a run should use, or ``None`` to stay on the default device.

    ``None`` when ``shard`` is false or the chains fit one device (a single device, or a
    single chain). A layout that leaves devices idle or computes padding chains comes with
    an :class:`UnevenChainsWarning` saying so.
    """
    if not shard:
        return None
    layout = ChainMesh(num_chains, devices)
    if layout.num_devices < 2:
        return None
    if layout.num_padding or layout.num_idle:
        padding = (
            f", plus {layout.num_padding} padding chain(s) copying the first ones, computed "
            "and dropped"
            if layout.num_padding
            else ""
        )
        warnings.warn(
            f"{layout.num_chains} chains do not divide over {layout.num_available} devices: "
            f"running {layout.chains_per_device} chain(s) on each of {layout.num_devices} "
            f"devices{padding}; {layout.num_idle} device(s) idle. Use a multiple of "
            f"{layout.num_available} chains to use every device, or shard=False to stay on "
            "one device",
            UnevenChainsWarning,
            stacklevel=3,
        )
    return layout


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (nothing with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def spans_devices(tree) -> bool:
    """Whether some leaf of ``tree`` is spread over several devices."""
    return any(
        isinstance(x, jax.Array) and len(x.sharding.device_set) > 1
        for x in jax.tree_util.tree_leaves(tree)
    )


def to_host(tree):
    """Every leaf as a NumPy array holding all of its values, on every process.

    Arrays spread over the devices of several processes are gathered with
    :func:`jax.experimental.multihost_utils.process_allgather` (a collective: every process
    must call :func:`to_host` on the same arrays in the same order); others are copied with
    ``np.asarray``. Typed PRNG keys become their raw key data.
    """

    def leaf_to_host(x):
        if _is_key(x):
            x = jax.random.key_data(x)
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(leaf_to_host, tree)
