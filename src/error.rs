//! Errors of tasks and of scheduling: what a failed task's `fetch` returns.

use std::fmt;
use std::sync::Arc;

use crate::processor::MoveError;

/// Names a task in errors and logs: its identifier and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskLabel {
    /// The task's identifier, unique within a process.
    pub id: u64,
    /// The task's name: the one given in [`Options::name`](crate::Options::name), else its
    /// function's name (`add1`), or for a closure the place it was spawned from
    /// (`src/main.rs:12`); library operations name theirs (`sum`, `gemm`).
    pub name: Arc<str>,
}

impl fmt::Display for TaskLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` (task {})", self.name, self.id)
    }
}

/// Why a task produced no value.
///
/// Fetching a failed task returns this error; the tasks that depended on it fail with
/// [`TaskError::Upstream`], which carries the root cause (see [`TaskError::root_cause`]).
/// The error is cheap to clone: every fetcher of a failed task gets the same error.
///
/// Its message names the task, the processor and what went wrong, including the text of the
/// function's own error; [`source`](std::error::Error::source) then continues with what that
/// error did not say itself (its own source), so a printer that walks the chain shows each
/// text once:
///
/// ```
/// use dagger::prelude::*;
/// use std::error::Error;
///
/// let ctx = Context::builder().threads(1).build()?;
/// let opts = Options::new().name("load");
/// let t = ctx.try_spawn_with(opts, || "x".parse::<i32>(), ());
/// let e = t.fetch().unwrap_err();
/// assert!(e.to_string().starts_with("task `load` (task "), "{e}");
/// assert!(e.to_string().ends_with(": invalid digit found in string"), "{e}");
/// assert!(e.source().is_none()); // ParseIntError has no source of its own
///
/// // Dependents name their failed input, and the root cause as their source.
/// let next = ctx.spawn(|x: i32| x + 1, (&t,));
/// let e = next.fetch().unwrap_err();
/// assert!(e.to_string().contains("did not run because its input `load`"), "{e}");
/// assert_eq!(e.source().unwrap().to_string(), e.root_cause().to_string());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TaskError {
    /// The task's function returned an error.
    Failed {
        /// The task.
        task: TaskLabel,
        /// The processor it ran on.
        processor: String,
        /// The error the function returned (its text is part of this error's message).
        cause: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The task's function panicked.
    Panicked {
        /// The task.
        task: TaskLabel,
        /// The processor it ran on.
        processor: String,
        /// The panic message.
        message: String,
    },
    /// The task did not run because one of its inputs failed.
    Upstream {
        /// The task that did not run.
        task: TaskLabel,
        /// The input that failed (itself possibly failed upstream).
        input: TaskLabel,
        /// The error of the task where the failure started (the
        /// [`source`](std::error::Error::source)).
        root: Arc<TaskError>,
    },
    /// The task was cancelled before it started.
    Cancelled {
        /// The task.
        task: TaskLabel,
    },
    /// No processor could take the task.
    Schedule {
        /// The task.
        task: TaskLabel,
        /// Why (its text is part of this error's message).
        error: ScheduleError,
    },
    /// An input could not be moved to the processor chosen for the task.
    Move {
        /// The task.
        task: TaskLabel,
        /// The processor.
        processor: String,
        /// Which input (0-based, counting dependencies in argument order).
        index: usize,
        /// What went wrong (the [`source`](std::error::Error::source)).
        error: Arc<MoveError>,
    },
    /// An argument did not have the type the function expects (typically because a
    /// processor's `move_in` changed it; see [`DTask::moved`](crate::DTask::moved)).
    ArgumentType {
        /// The task.
        task: TaskLabel,
        /// The processor.
        processor: String,
        /// Which argument (0-based).
        index: usize,
        /// The type the function takes.
        expected: &'static str,
        /// The type it was given.
        found: &'static str,
    },
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Failed {
                task,
                processor,
                cause,
            } => write!(f, "task {task} failed on {processor}: {cause}"),
            TaskError::Panicked {
                task,
                processor,
                message,
            } => write!(f, "task {task} panicked on {processor}: {message}"),
            TaskError::Upstream { task, input, .. } => {
                write!(f, "task {task} did not run because its input {input} failed")
            }
            TaskError::Cancelled { task } => write!(f, "task {task} was cancelled before it started"),
            TaskError::Schedule { task, error } => {
                write!(f, "task {task} could not be scheduled: {error}")
            }
            TaskError::Move {
                task,
                processor,
                index,
                ..
            } => write!(f, "task {task}: input {index} could not be moved to {processor}"),
            TaskError::ArgumentType {
                task,
                processor,
                index,
                expected,
                found,
            } => write!(
                f,
                "task {task} on {processor}: argument {index} should be `{expected}` but is `{found}`"
            ),
        }
    }
}

impl std::error::Error for TaskError {
    /// What the message did not already say: the root cause of an upstream failure, the
    /// reason a move failed, and the source of a function's error (whose own text is in the
    /// message).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TaskError::Failed { cause, .. } => cause.source(),
            TaskError::Upstream { root, .. } => Some(&**root),
            TaskError::Move { error, .. } => Some(&**error),
            TaskError::Schedule { error, .. } => std::error::Error::source(error),
            _ => None,
        }
    }
}

impl TaskError {
    /// The task this error belongs to.
    pub fn task(&self) -> &TaskLabel {
        match self {
            TaskError::Failed { task, .. }
            | TaskError::Panicked { task, .. }
            | TaskError::Upstream { task, .. }
            | TaskError::Cancelled { task }
            | TaskError::Schedule { task, .. }
            | TaskError::Move { task, .. }
            | TaskError::ArgumentType { task, .. } => task,
        }
    }

    /// The error where the failure started: `self` unless this is an
    /// [`Upstream`](TaskError::Upstream) failure.
    pub fn root_cause(&self) -> &TaskError {
        match self {
            TaskError::Upstream { root, .. } => root,
            e => e,
        }
    }

    /// Whether the task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled { .. })
    }

    /// Whether the root cause is a panic.
    pub fn is_panic(&self) -> bool {
        matches!(self.root_cause(), TaskError::Panicked { .. })
    }

    /// The cells a datadeps region put back to older versions, when this is the error of
    /// such a region (see [`CellsRestored`]).
    pub fn restored_cells(&self) -> Option<&CellsRestored> {
        match self {
            TaskError::Failed { cause, .. } => cause.downcast_ref::<CellsRestored>(),
            _ => None,
        }
    }

    /// The error a dependent of the task that failed with `self` fails with.
    pub(crate) fn upstream(&self, dependent: TaskLabel) -> TaskError {
        let root = match self {
            TaskError::Upstream { root, .. } => root.clone(),
            e => Arc::new(e.clone()),
        };
        TaskError::Upstream {
            task: dependent,
            input: self.task().clone(),
            root,
        }
    }
}

/// Why no processor could take a task: the cause of a [`TaskError::Schedule`], which the
/// task's [`fetch`](crate::DTask::fetch) returns.
///
/// ```
/// use dagger::prelude::*;
/// use dagger::{ScheduleError, TaskError};
///
/// let ctx = Context::builder().threads(1).build()?;
/// // Closures run on CPU threads only, so a GPU scope leaves them nowhere to run.
/// let t = ctx.spawn_with(Options::new().scope(Scope::gpu(7)), || 1, ());
/// match t.fetch().unwrap_err() {
///     TaskError::Schedule { error: ScheduleError::NoProcessor { considered, .. }, .. } => {
///         assert!(!considered.is_empty(), "it says why each processor was not taken");
///     }
///     other => panic!("{other}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The scope and the task's needs leave no processor.
    #[error("no processor in scope {scope} can run it; considered: {}", considered_list(.considered))]
    NoProcessor {
        /// The scope, as written.
        scope: String,
        /// Each processor of the context and why it was not taken.
        considered: Vec<(String, String)>,
    },
    /// The context was shut down.
    #[error("the context was shut down")]
    Shutdown,
    /// Arguments are chunks pinned to scopes that, with the task's own scope, leave no
    /// processor able to run it.
    #[error(
        "its arguments are chunks pinned to scopes that leave no processor to run it: {}; \
         the task's scope is {scope}",
        pinned_list(.pinned)
    )]
    ChunkScopes {
        /// The task's own scope, as written.
        scope: String,
        /// Each pinned argument (by position) and its scope.
        pinned: Vec<(usize, String)>,
        /// Why the combined scope has no processor.
        #[source]
        source: Box<ScheduleError>,
    },
}

fn pinned_list(p: &[(usize, String)]) -> String {
    p.iter()
        .map(|(i, s)| format!("argument {i} pinned to {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn considered_list(c: &[(String, String)]) -> String {
    if c.is_empty() {
        return "none".into();
    }
    c.iter()
        .map(|(p, why)| format!("{p} ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cells of a datadeps region that did not get their newest version back when the region
/// ended: a kernel task that would have made it failed, or the version lives only in memory
/// that can no longer be read (a lost GPU). Each such cell holds the newest version that
/// could still be moved to the host — at worst the value it had before its kernel tasks —
/// and is listed here with that version. The region's first task failure is the
/// [`source`](std::error::Error::source).
///
/// It is the cause of the [`TaskError::Failed`] a region returns when a cell lost data
/// (or when no task failed); [`TaskError::restored_cells`] finds it:
///
/// ```
/// use dagger::{CellsRestored, TaskError};
/// fn lost_cells(e: &TaskError) -> Vec<u64> {
///     e.restored_cells()
///         .map(|r| r.cells.iter().filter(|c| c.lost).map(|c| c.cell).collect())
///         .unwrap_or_default()
/// }
/// # let _ = lost_cells;
/// ```
#[derive(Clone, Debug)]
pub struct CellsRestored {
    /// The cells that went back, and to what.
    pub cells: Vec<RestoredCell>,
    /// The first task of the region that failed, if one did.
    pub first_failure: Option<TaskError>,
}

/// One cell in [`CellsRestored`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredCell {
    /// The cell, as [`Cell::id`](crate::Cell::id) names it.
    pub cell: u64,
    /// The task whose result the cell holds now; `None`: the value it had before the
    /// region's kernel tasks took it.
    pub version: Option<TaskLabel>,
    /// How many newer versions were made (or were to be made) and could not be restored.
    pub skipped: usize,
    /// Why the newest of them could not be restored.
    pub reason: String,
    /// Whether a version that had been made could no longer be read (it lived only on a
    /// device that was lost), as opposed to versions whose tasks failed.
    pub lost: bool,
}

impl fmt::Display for RestoredCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cell {} went back to ", self.cell)?;
        match &self.version {
            None => f.write_str("the value it had before its kernel tasks")?,
            Some(t) => write!(f, "the result of {t}")?,
        }
        write!(
            f,
            " ({} newer version{} lost: {})",
            self.skipped,
            if self.skipped == 1 { "" } else { "s" },
            self.reason
        )
    }
}

impl fmt::Display for CellsRestored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cell{} did not get {} newest version back: ",
            self.cells.len(),
            if self.cells.len() == 1 { "" } else { "s" },
            if self.cells.len() == 1 {
                "its"
            } else {
                "their"
            }
        )?;
        for (i, c) in self.cells.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl CellsRestored {
    /// Whether values that had been computed were lost (not only versions whose tasks
    /// failed).
    pub fn lost_data(&self) -> bool {
        self.cells.iter().any(|c| c.lost)
    }
}

impl std::error::Error for CellsRestored {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.first_failure.as_ref().map(|e| e as _)
    }
}
