//! The request body deadline: from the end of the head until the whole body has arrived,
//! however it trickles in (`--body-timeout-ms`). The accept loop (`listener.rs`) wraps every
//! request body that has one and answers 408 when it fires.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::time::Sleep;

/// A request body that fails once its deadline passes, however the bytes trickle in
/// (tower-http's `RequestBodyTimeout` restarts its clock at every frame, which a client
/// sending a byte every few seconds never trips).
pub(crate) struct DeadlineBody {
    inner: Incoming,
    deadline: Option<(Pin<Box<Sleep>>, Arc<AtomicBool>)>,
}

impl DeadlineBody {
    pub(crate) fn new(inner: Incoming, timeout: Duration, expired: Arc<AtomicBool>) -> Self {
        DeadlineBody {
            inner,
            deadline: Some((Box::pin(tokio::time::sleep(timeout)), expired)),
        }
    }

    pub(crate) fn unlimited(inner: Incoming) -> Self {
        DeadlineBody {
            inner,
            deadline: None,
        }
    }
}

/// The error a body read gets when the deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub(crate) struct BodyTimeout;

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if let Some((sleep, expired)) = &mut this.deadline {
            if sleep.as_mut().poll(cx).is_ready() {
                expired.store(true, Ordering::SeqCst);
                return Poll::Ready(Some(Err(BodyTimeout.into())));
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
