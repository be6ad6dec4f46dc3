//! The messages ranks exchange, encoded with postcard. Values travel inside them as
//! [`Bytes`] (raw for numeric vectors); everything else is a few integers and names.
//!
//! Head → worker: `Run` (a task on one of the worker's processors), `Free` (objects whose
//! last handle dropped), `Shutdown`. Worker → head: `Hello` (its processors), `Done` /
//! `Failed` (a task's outcome; the value stays on the worker). Any → owner: `Fetch` (an
//! object's value), answered by `Value`; a worker fetches the inputs it does not hold
//! straight from their owner, never through the head. `Ping`/`Pong` measure links;
//! `Heartbeat` says a rank is alive.

use serde::{Deserialize, Serialize};

use super::wire::Bytes;

/// One processor of a worker, as it describes itself to the head.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct ProcDesc {
    /// Its index in the worker's own processor list.
    pub(crate) index: u32,
    /// `"thread"`, `"wgpu"` or a custom kind's name.
    pub(crate) kind: String,
    pub(crate) description: String,
    pub(crate) default_enabled: bool,
    pub(crate) thread: Option<u32>,
    pub(crate) gpu: Option<u32>,
    pub(crate) backend: Option<String>,
    /// The device index of its memory space, for a processor with memory of its own.
    pub(crate) device: Option<u32>,
    pub(crate) capacity: u32,
    pub(crate) prior_gflops: f64,
}

/// A value with the name of its type.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Blob {
    pub(crate) type_name: String,
    pub(crate) bytes: Bytes,
}

/// What a task runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Work {
    /// A function registered with `remote_fn!`, by name.
    Function { name: String },
    /// A registered kernel, by name, with its parameters.
    Kernel { name: String, params: Blob },
}

/// One argument of a task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Arg {
    /// An object the executing rank holds.
    Here { obj: u64 },
    /// An object another rank holds: fetched from it directly.
    At { rank: u32, obj: u64 },
    /// A value sent along.
    Inline(Blob),
}

/// How a task failed on a worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Failure {
    /// An error, with the messages of its source chain, outermost first.
    Error { chain: Vec<String> },
    /// A panic, with its message.
    Panic { message: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Msg {
    Hello {
        host: String,
        pid: u32,
        procs: Vec<ProcDesc>,
    },
    Run {
        req: u64,
        proc: u32,
        name: String,
        work: Work,
        args: Vec<Arg>,
    },
    Done {
        req: u64,
        obj: u64,
        type_name: String,
        bytes: u64,
    },
    Failed {
        req: u64,
        failure: Failure,
    },
    Free {
        objs: Vec<u64>,
    },
    Fetch {
        req: u64,
        obj: u64,
    },
    Value {
        req: u64,
        value: Result<Blob, String>,
    },
    Ping {
        req: u64,
        payload: Bytes,
    },
    Pong {
        req: u64,
        payload: Bytes,
    },
    Heartbeat,
    Shutdown,
}

impl Msg {
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("messages always encode")
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Msg, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bulk_bytes_are_not_inflated() {
        let payload = vec![7u8; 1 << 16];
        let m = Msg::Value {
            req: 3,
            value: Ok(Blob {
                type_name: "alloc::vec::Vec<f64>".into(),
                bytes: Bytes(payload.clone()),
            }),
        };
        let enc = m.encode();
        assert!(enc.len() < payload.len() + 64, "{}", enc.len());
        match Msg::decode(&enc).unwrap() {
            Msg::Value {
                req: 3,
                value: Ok(b),
            } => assert_eq!(b.bytes.0, payload),
            other => panic!("{other:?}"),
        }
        assert!(Msg::decode(&[250, 1, 2]).is_err());
    }
}
