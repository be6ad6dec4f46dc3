//! The messages ranks exchange, encoded with postcard. A frame is the length of the
//! encoded message (4 bytes, little-endian), the message, then a payload: the encoded
//! value a `Value` reply (or a small result's `Done`) carries, written and read in place so
//! that a large block is not copied again on its way. A numeric vector in a `Value` reply
//! goes as a body apart instead where the transport can keep one
//! ([`Transport::send_with_body`](super::Transport::send_with_body)): sent from the
//! value's memory, received into the vector that keeps it ([`Payload`]). Smaller values travel inside messages as [`Bytes`] (raw for
//! numeric vectors); everything else is a few integers and names.
//!
//! Head → worker: `Run` (a task on one of the worker's processors), `Free` (objects whose
//! last handle dropped), `Shutdown`. Worker → head: `Hello` (its processors), `Done` /
//! `Failed` (a task's outcome; the value stays on the worker, and a result of at most
//! [`INLINE_MAX`] bytes comes along too, so fetching it needs no second round trip).
//! Any → owner: `Fetch` (an object's value), answered by `Value`; a worker fetches the
//! inputs it does not hold straight from their owner, never through the head, and keeps
//! the copy (a replica) for the next task that reads it until the head says `Forget`. `Ping`/`Pong` measure links;
//! `Heartbeat` says a rank is alive.

use serde::{Deserialize, Serialize};

use super::transport::Body;
use super::wire::{self, Bytes, WireError};
use crate::value::Value;

/// The largest encoded result a `Done` carries along (bytes): small enough that sending
/// it costs about what the message itself does.
pub(crate) const INLINE_MAX: u64 = 16 << 10;

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
    /// A task finished; its result stays on the worker as object `obj`. A small result
    /// also travels in the frame's payload (`inline`), so that fetching it costs nothing.
    Done {
        req: u64,
        obj: u64,
        type_name: String,
        bytes: u64,
        inline: bool,
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
    /// The value of a fetched object: its type's name, the encoding in the frame's
    /// payload.
    Value {
        req: u64,
        value: Result<String, String>,
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
    /// Objects of `owner` with no handle left: a rank that kept copies of them (replicas
    /// of inputs it fetched) drops them.
    Forget {
        owner: u32,
        objs: Vec<u64>,
    },
}

/// Where the value a message carries is: after the message in its frame, or in a body
/// that the transport kept apart.
pub(crate) enum Payload {
    /// The frame, and where the value's encoding starts in it.
    Frame(Vec<u8>, usize),
    /// A body still to be received.
    Apart(Body),
}

impl Payload {
    /// The message received as `frame` (with `body`, when one came apart) and its payload.
    pub(crate) fn split(
        frame: Vec<u8>,
        body: Option<Body>,
    ) -> Result<(Msg, Payload), postcard::Error> {
        let (m, at) = Msg::decode(&frame)?;
        Ok(match body {
            Some(b) => (m, Payload::Apart(b)),
            None => (m, Payload::Frame(frame, at)),
        })
    }

    /// The value of type `type_name` it carries.
    pub(crate) fn decode(self, type_name: &str) -> Result<Value, WireError> {
        match self {
            Payload::Frame(frame, at) => wire::decode_value(type_name, &frame[at..]),
            Payload::Apart(body) => wire::recv_value(type_name, body),
        }
    }
}

impl Msg {
    /// The frame of a message without payload.
    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_with(|_| Ok::<(), std::convert::Infallible>(()))
            .unwrap_or_else(|e| match e {})
    }

    /// The frame of a message whose payload `payload` appends.
    pub(crate) fn encode_with<E>(
        &self,
        payload: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Vec<u8>, E> {
        let mut out = postcard::to_extend(self, vec![0u8; 4]).expect("messages always encode");
        let n = (out.len() - 4) as u32;
        out[..4].copy_from_slice(&n.to_le_bytes());
        payload(&mut out)?;
        Ok(out)
    }

    /// A frame's message, and where its payload starts.
    pub(crate) fn decode(frame: &[u8]) -> Result<(Msg, usize), postcard::Error> {
        let head: [u8; 4] = frame
            .get(..4)
            .and_then(|h| h.try_into().ok())
            .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        let end = 4 + u32::from_le_bytes(head) as usize;
        let body = frame
            .get(4..end)
            .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        Ok((postcard::from_bytes(body)?, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bulk_bytes_are_not_inflated() {
        let payload = vec![7u8; 1 << 16];
        let m = Msg::Ping {
            req: 3,
            payload: Bytes(payload.clone()),
        };
        let enc = m.encode();
        assert!(enc.len() < payload.len() + 64, "{}", enc.len());
        match Msg::decode(&enc).unwrap() {
            (Msg::Ping { req: 3, payload: p }, end) => {
                assert_eq!(p.0, payload);
                assert_eq!(end, enc.len(), "no payload after the message");
            }
            other => panic!("{other:?}"),
        }
        // A value reply carries its encoding after the message, as is.
        let frame = Msg::Value {
            req: 4,
            value: Ok("alloc::vec::Vec<u8>".into()),
        }
        .encode_with(|out| {
            out.extend_from_slice(&payload);
            Ok::<(), ()>(())
        })
        .unwrap();
        let (m, at) = Msg::decode(&frame).unwrap();
        assert!(
            matches!(
                m,
                Msg::Value {
                    req: 4,
                    value: Ok(_)
                }
            ),
            "{m:?}"
        );
        assert_eq!(&frame[at..], &payload[..]);
        assert!(Msg::decode(&[250, 1, 2]).is_err());
        assert!(
            Msg::decode(&[200, 0, 0, 0, 1]).is_err(),
            "a truncated frame"
        );
    }
}
