//! The test knobs the Square and Toast order endpoints share: latency per kind of order
//! call, order calls failed with a status (an outage, a 429 storm), and created orders whose
//! answer is lost (held past the client's timeout, or answered 504) although the order
//! exists — the cases exactly-once injection has to survive.
//!
//! The knobs are per mock ([`OrderKnobs`], reached through [`WithOrderKnobs`]); the mocks'
//! own modules decide which request is which [`OrderCall`] and when an order counts as
//! created.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::mock::{Mock, Provider};

/// The kind of order call a knob applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderCall {
    /// Creating an order: Square `POST /v2/orders`, Toast `POST /orders/v2/orders`.
    Create,
    /// Pricing one, nothing stored: Square `POST /v2/orders/calculate`, Toast
    /// `POST /orders/v2/prices`.
    Price,
    /// Reading orders: Square `GET /v2/orders/{id}` and `POST /v2/orders/search`, Toast
    /// `GET /orders/v2/orders/{guid}` and `GET /orders/v2/ordersBulk` (sales polling too).
    Read,
    /// Paying one: Square `POST /v2/payments` (Toast takes payments inside the order).
    Pay,
    /// Changing one through the API: Square `PUT /v2/orders/{id}`.
    Update,
}

/// Order calls answered with an error instead of being served: nothing is created, priced
/// or read. Build with [`OrderFault::next`], narrow with [`OrderFault::on`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFault {
    /// HTTP status to answer (503 outage, 429 rate limit, 500, 502…).
    pub status: u16,
    /// How many more matching calls fail.
    pub remaining: u32,
    /// Only calls of this kind fail (`None` = every order call).
    pub call: Option<OrderCall>,
    /// A `Retry-After` header value to send with it (Toast sends one with its 429s; Square
    /// never does).
    pub retry_after: Option<String>,
}

impl OrderFault {
    /// The next `n` order calls (of any kind until narrowed with [`OrderFault::on`]) answer
    /// `status` in the provider's error format.
    pub fn next(n: u32, status: u16) -> OrderFault {
        OrderFault {
            status,
            remaining: n,
            call: None,
            retry_after: None,
        }
    }

    /// Only calls of kind `call` fail (and count down).
    pub fn on(mut self, call: OrderCall) -> OrderFault {
        self.call = Some(call);
        self
    }

    /// Sends `Retry-After: value` with each failure.
    pub fn retry_after(mut self, value: &str) -> OrderFault {
        self.retry_after = Some(value.to_owned());
        self
    }
}

/// What becomes of the answer to a create call whose order was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostAnswer {
    /// The answer is held this long (on top of any latency): set it past the client's
    /// timeout (Toast's 30 s order timeout, the host's own) and the caller gives up on an
    /// order that exists.
    Late(Duration),
    /// Answered `504 Gateway Timeout` in the provider's error format, as a gateway in front
    /// of the POS does when the POS is slow: the order exists all the same.
    GatewayTimeout,
}

/// The order knobs of one mock; see the module docs.
#[derive(Debug, Default)]
pub struct OrderKnobs {
    latency: HashMap<OrderCall, Duration>,
    faults: Vec<OrderFault>,
    lost: VecDeque<LostAnswer>,
    /// The delay of the answer being built (taken by [`crate::mock::Provider::answer_delay`]).
    hold: Option<Duration>,
}

impl OrderKnobs {
    /// The first live fault for `call`, counted down; `None` when the call is served.
    pub(crate) fn take_fault(&mut self, call: OrderCall) -> Option<OrderFault> {
        let index = self
            .faults
            .iter()
            .position(|f| f.remaining > 0 && f.call.is_none_or(|c| c == call))?;
        let fault = &mut self.faults[index];
        fault.remaining -= 1;
        let taken = fault.clone();
        self.faults.retain(|f| f.remaining > 0);
        Some(taken)
    }

    /// What becomes of this successful create's answer, if it is to be lost.
    pub(crate) fn take_lost(&mut self) -> Option<LostAnswer> {
        self.lost.pop_front()
    }

    /// Holds the answer of the call being served for `call`'s latency plus `extra`.
    pub(crate) fn hold(&mut self, call: OrderCall, extra: Duration) {
        let total = self.latency.get(&call).copied().unwrap_or_default() + extra;
        self.hold = (!total.is_zero()).then_some(total);
    }

    /// The hold set for the answer just built (at most once).
    pub(crate) fn take_hold(&mut self) -> Option<Duration> {
        self.hold.take()
    }
}

/// `text` as a non-negative decimal scaled by 10^`places` (`None` if it is not one or has
/// more places): money and quantities are read from their text, never through `f64`.
pub(crate) fn decimal(text: &str, places: u32) -> Option<i128> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || frac.len() > places as usize {
        return None;
    }
    if text.contains('.') && frac.is_empty() {
        return None;
    }
    let padded = format!("{frac:0<width$}", width = places as usize);
    format!("{int}{padded}").parse().ok()
}

/// `amount × scaled / 10^places`, rounded half up (amounts are never negative here).
pub(crate) fn times(amount: i64, scaled: i128, places: u32) -> i64 {
    let unit = 10i128.pow(places);
    let product = i128::from(amount) * scaled;
    i64::try_from((product + unit / 2).div_euclid(unit)).unwrap_or(i64::MAX)
}

/// A provider with order knobs.
pub trait WithOrderKnobs {
    /// Its knobs.
    fn order_knobs(&mut self) -> &mut OrderKnobs;
}

impl<P: Provider + WithOrderKnobs> Mock<P> {
    /// Every order call (`None`) or calls of one kind take `latency` before they are
    /// answered (200 ms for a busy POS; Toast's order writes can take up to 30 s). The call
    /// takes effect first — an order is stored, then its answer waits — and other requests
    /// are served meanwhile. `Duration::ZERO` removes it.
    pub fn set_order_latency(&self, call: Option<OrderCall>, latency: Duration) {
        self.with(|api| {
            let knobs = api.order_knobs();
            let calls = match call {
                Some(c) => vec![c],
                None => vec![
                    OrderCall::Create,
                    OrderCall::Price,
                    OrderCall::Read,
                    OrderCall::Pay,
                    OrderCall::Update,
                ],
            };
            for c in calls {
                if latency.is_zero() {
                    knobs.latency.remove(&c);
                } else {
                    knobs.latency.insert(c, latency);
                }
            }
        });
    }

    /// Fails order calls as `fault` says (503 for an outage, 429 with
    /// [`OrderFault::retry_after`] for a rate-limit storm), in the provider's error format.
    /// A failed call changes nothing. Several faults queue; each counts down on its own.
    pub fn fail_orders(&self, fault: OrderFault) {
        self.with(|api| api.order_knobs().faults.push(fault));
    }

    /// The next `n` create calls that succeed (the order stored; for Square an idempotent
    /// replay counts too) lose their answer as `how` says: "timed out, but created".
    pub fn lose_next_answers(&self, n: u32, how: LostAnswer) {
        self.with(|api| {
            let knobs = api.order_knobs();
            knobs.lost.extend(std::iter::repeat_n(how, n as usize));
        });
    }

    /// Removes every order fault and pending lost answer (latency stays).
    pub fn clear_order_faults(&self) {
        self.with(|api| {
            let knobs = api.order_knobs();
            knobs.faults.clear();
            knobs.lost.clear();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_faults_count_down_per_kind() {
        let mut knobs = OrderKnobs::default();
        knobs
            .faults
            .push(OrderFault::next(2, 503).on(OrderCall::Create));
        knobs.faults.push(OrderFault::next(1, 429).retry_after("3"));
        // A read takes the any-kind fault, not the create-only one.
        let read = knobs
            .take_fault(OrderCall::Read)
            .expect("the 429 applies to reads");
        assert_eq!((read.status, read.retry_after.as_deref()), (429, Some("3")));
        assert!(
            knobs.take_fault(OrderCall::Read).is_none(),
            "the 429 was for one call"
        );
        assert_eq!(
            knobs.take_fault(OrderCall::Create).map(|f| f.status),
            Some(503)
        );
        assert_eq!(
            knobs.take_fault(OrderCall::Create).map(|f| f.status),
            Some(503)
        );
        assert!(knobs.take_fault(OrderCall::Create).is_none());
        assert!(knobs.faults.is_empty());
    }

    #[test]
    fn decimals_are_read_from_text() {
        assert_eq!(decimal("2", 5), Some(200_000));
        assert_eq!(decimal("1.5", 5), Some(150_000));
        assert_eq!(decimal("9.5", 2), Some(950));
        assert_eq!(decimal("0.125", 2), None);
        assert_eq!(decimal("1.", 2), None);
        assert_eq!(decimal("-1", 2), None);
        assert_eq!(times(950, 150_000, 5), 1425);
        assert_eq!(times(333, 82_500, 6), 27); // 8.25 % of 3.33, rounded half up
    }

    #[test]
    fn holds_add_latency_and_are_taken_once() {
        let mut knobs = OrderKnobs::default();
        knobs
            .latency
            .insert(OrderCall::Create, Duration::from_millis(200));
        knobs.hold(OrderCall::Price, Duration::ZERO);
        assert_eq!(knobs.take_hold(), None);
        knobs.hold(OrderCall::Create, Duration::from_secs(31));
        assert_eq!(knobs.take_hold(), Some(Duration::from_millis(31_200)));
        assert_eq!(knobs.take_hold(), None);
    }
}
