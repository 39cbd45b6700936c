//! The processes of a run: one, or the ranks of an MPI job (`mpirun -np W carp pretrain ...`,
//! `srun --mpi=pmix carp pretrain ...`) when carp is built with the `mpi` cargo feature.
//!
//! A process finds out that it was started by an MPI launcher from the environment the
//! launchers set (Open MPI's `OMPI_COMM_WORLD_SIZE`, PMIx's `PMIX_RANK`, PMI's `PMI_RANK`),
//! so that a plain `carp pretrain` never initialises MPI. Collectives are host-staged sums
//! ([`ProcessGroup::all_reduce_sum`]) called from one thread at a time (MPI's
//! `MPI_THREAD_SERIALIZED`, guarded by a mutex).

use crate::error::TrainError;
use carp_core::collective::{Group, Solo};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What this process's all-reduces cost so far: calls, f32 values summed, and seconds spent
/// in them (transfer plus waiting for the slowest rank).
#[derive(Debug, Default)]
pub struct CommStats {
    calls: AtomicU64,
    values: AtomicU64,
    nanos: AtomicU64,
}

impl CommStats {
    /// Adds one all-reduce of `values` f32 that took `secs`.
    pub fn add(&self, values: usize, secs: f64) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.values.fetch_add(values as u64, Ordering::Relaxed);
        self.nanos.fetch_add((secs * 1e9) as u64, Ordering::Relaxed);
    }

    /// `(calls, bytes, seconds)` so far.
    pub fn totals(&self) -> (u64, u64, f64) {
        (
            self.calls.load(Ordering::Relaxed),
            4 * self.values.load(Ordering::Relaxed),
            self.nanos.load(Ordering::Relaxed) as f64 * 1e-9,
        )
    }
}

/// Environment variables an MPI launcher sets in each process it starts.
const LAUNCHER_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"];

/// Environment variables that hold a process's index among the ranks on its node.
const LOCAL_RANK_VARS: [&str; 4] = [
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "SLURM_LOCALID",
    "MPI_LOCALRANKID",
    "PMI_LOCAL_RANK",
];

/// The name of the first launcher variable set, if this process was started by one.
pub fn launcher_variable() -> Option<&'static str> {
    LAUNCHER_VARS
        .into_iter()
        .find(|v| std::env::var_os(v).is_some())
}

/// This process's index among the ranks on its node (0 when not launched by MPI): the GPU
/// index to use with one rank per device.
pub fn local_rank() -> usize {
    LOCAL_RANK_VARS
        .into_iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(0)
}

/// The run's processes: the group every collective goes through, and (under MPI) the
/// environment that must outlive it.
pub struct World {
    group: Group,
    #[cfg(feature = "mpi")]
    _mpi: Option<mpi_world::Environment>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("rank", &self.rank())
            .field("size", &self.size())
            .finish()
    }
}

impl World {
    /// This process alone.
    pub fn solo() -> Self {
        Self::from_group(Arc::new(Solo))
    }

    /// A world over an existing group (threads in tests, another runtime).
    pub fn from_group(group: Group) -> Self {
        Self {
            group,
            #[cfg(feature = "mpi")]
            _mpi: None,
        }
    }

    /// The MPI job this process belongs to when an MPI launcher started it, else this
    /// process alone.
    ///
    /// # Errors
    /// Started by a launcher in a build without the `mpi` feature, or MPI fails to
    /// initialise.
    pub fn init() -> Result<Self, TrainError> {
        let Some(var) = launcher_variable() else {
            return Ok(Self::solo());
        };
        #[cfg(feature = "mpi")]
        {
            let _ = var;
            let env = mpi_world::Environment::init()?;
            Ok(Self {
                group: env.group(),
                _mpi: Some(env),
            })
        }
        #[cfg(not(feature = "mpi"))]
        {
            // One rank of several would train alone on a fraction of the intended batch.
            Err(TrainError::Distributed(format!(
                "started by an MPI launcher ({var} is set) but this carp was built without \
                 MPI: rebuild with `cargo build --release --features mpi` (needs Open MPI: \
                 Debian `openmpi-bin libopenmpi-dev libclang-dev`)"
            )))
        }
    }

    /// The group to train with.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    /// Number of processes.
    pub fn size(&self) -> usize {
        self.group.size()
    }

    /// The cost of this process's all-reduces so far, under MPI.
    pub fn comm_stats(&self) -> Option<&CommStats> {
        #[cfg(feature = "mpi")]
        if let Some(env) = &self._mpi {
            return Some(env.stats());
        }
        None
    }

    /// Ends every process of the job with `code` (MPI_Abort) after a fatal error on this
    /// one, so that no rank waits forever in a collective; a plain exit for one process.
    pub fn abort(&self, code: i32) -> ! {
        abort_job(code)
    }
}

/// Ends the whole MPI job with `code` when MPI is running (MPI_Abort), else this process:
/// for panic hooks, which hold no [`World`].
pub fn abort_job(code: i32) -> ! {
    #[cfg(feature = "mpi")]
    if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
        mpi_world::abort(code);
    }
    std::process::exit(code)
}

/// This process's rank as the MPI launcher's environment says (before MPI starts), if an
/// MPI launcher started it: for labelling its log lines.
pub fn launcher_rank() -> Option<usize> {
    launcher_variable()?;
    ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"]
        .into_iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

#[cfg(feature = "mpi")]
mod mpi_world {
    //! MPI through rsmpi.

    use super::*;
    use carp_core::collective::ProcessGroup;
    use mpi::collective::SystemOperation;
    use mpi::environment::{Threading, Universe};
    use mpi::topology::{Communicator, SimpleCommunicator};
    use mpi::traits::CommunicatorCollectives;
    use std::sync::Mutex;

    /// The initialised MPI environment (finalised on drop) and its world communicator.
    pub struct Environment {
        group: Group,
        stats: Arc<CommStats>,
        _universe: Universe,
    }

    impl Environment {
        pub fn init() -> Result<Self, TrainError> {
            let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
                .ok_or_else(|| TrainError::Distributed("MPI was already initialised".into()))?;
            if threading < Threading::Serialized {
                return Err(TrainError::Distributed(format!(
                    "the MPI library offers thread level {threading:?}; carp needs Serialized"
                )));
            }
            let world = universe.world();
            let stats = Arc::new(CommStats::default());
            let group: Group = Arc::new(MpiGroup {
                rank: world.rank() as usize,
                size: world.size() as usize,
                comm: Mutex::new(Comm(world)),
                stats: Arc::clone(&stats),
            });
            Ok(Self {
                group,
                stats,
                _universe: universe,
            })
        }

        pub fn stats(&self) -> &CommStats {
            &self.stats
        }

        pub fn group(&self) -> Group {
            Arc::clone(&self.group)
        }
    }

    /// MPI_Abort on the world communicator.
    pub fn abort(code: i32) -> ! {
        SimpleCommunicator::world().abort(code)
    }

    /// The world communicator, sendable between threads.
    struct Comm(SimpleCommunicator);

    // SAFETY: MPI is initialised with MPI_THREAD_SERIALIZED, which allows calls from any
    // thread as long as no two are concurrent; every use of the communicator holds the
    // mutex around it, and the world communicator is valid until MPI_Finalize (when the
    // `Universe` drops, after training).
    unsafe impl Send for Comm {}

    /// The ranks of `MPI_COMM_WORLD` as a [`ProcessGroup`].
    struct MpiGroup {
        rank: usize,
        size: usize,
        comm: Mutex<Comm>,
        stats: Arc<CommStats>,
    }

    impl std::fmt::Debug for MpiGroup {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "MpiGroup(rank {} of {})", self.rank, self.size)
        }
    }

    impl ProcessGroup for MpiGroup {
        fn rank(&self) -> usize {
            self.rank
        }

        fn size(&self) -> usize {
            self.size
        }

        fn all_reduce_sum(&self, buf: &mut [f32]) {
            let t0 = std::time::Instant::now();
            let send = buf.to_vec();
            let comm = self.comm.lock().unwrap_or_else(|e| e.into_inner());
            comm.0
                .all_reduce_into(&send[..], buf, SystemOperation::sum());
            self.stats.add(buf.len(), t0.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solo_world_is_rank_0_of_1() {
        let w = World::solo();
        assert_eq!((w.rank(), w.size()), (0, 1));
        let mut buf = [1.0f32, 2.0];
        w.group().all_reduce_sum(&mut buf);
        assert_eq!(buf, [1.0, 2.0]);
    }
}
