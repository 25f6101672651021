//! A tenant's ingestion rate limit: a token bucket of samples (Mimir's
//! `ingestion_rate` and `ingestion_burst_size`), checked once per write request after
//! relabeling and sampling, for the samples about to be stored.
//!
//! The bucket is `governor`'s GCRA limiter (the generic cell rate algorithm, which is a
//! token bucket stated in arrival times: ITU-T I.371 Annex A): it holds up to `burst`
//! samples and refills at `samples_per_second`. A request that does not fit is refused
//! whole with [`crate::IngestError::RateLimited`] (HTTP 429 with `Retry-After`, the time
//! until it would fit); one larger than the whole bucket can never fit and is refused with
//! [`crate::IngestError::BadRequest`] naming both sizes.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter as Gcra};
use serde::Deserialize;

use crate::{IngestError, Result};

/// A rate limit: `samples_per_second` (0 for none) with a bucket of `burst` samples (0:
/// one second's worth, at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestionRate {
    /// Samples per second refilled into the bucket; 0 for no limit.
    pub samples_per_second: f64,
    /// The bucket's size, samples: the largest request accepted at once and the burst
    /// above the rate. 0 means one second's worth.
    pub burst: u32,
}

/// The limiter of one [`IngestionRate`].
pub struct RateLimiter {
    gcra: Gcra<
        governor::state::NotKeyed,
        governor::state::InMemoryState,
        DefaultClock,
        governor::middleware::NoOpMiddleware<<DefaultClock as Clock>::Instant>,
    >,
    clock: DefaultClock,
    rate: IngestionRate,
}

impl RateLimiter {
    /// The limiter of `rate`, its bucket full; `None` when `rate` sets no limit.
    ///
    /// # Errors
    /// [`IngestError::Config`] for a negative, NaN or infinite rate.
    pub fn new(rate: IngestionRate) -> Result<Option<RateLimiter>> {
        let r = rate.samples_per_second;
        if !r.is_finite() || r < 0.0 {
            return Err(IngestError::Config(format!(
                "ingestion rate {r} samples/s: must be a finite number, 0 for no limit"
            )));
        }
        if r == 0.0 {
            return Ok(None);
        }
        let burst = if rate.burst > 0 {
            rate.burst
        } else {
            r.ceil().min(u32::MAX as f64) as u32
        };
        let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
        // Faster than one sample per nanosecond is no limit at all.
        let Some(quota) = Quota::with_period(Duration::from_secs_f64(1.0 / r)) else {
            return Ok(None);
        };
        Ok(Some(RateLimiter {
            gcra: Gcra::direct(quota.allow_burst(burst)),
            clock: DefaultClock::default(),
            rate: IngestionRate {
                samples_per_second: r,
                burst: burst.get(),
            },
        }))
    }

    /// Takes `samples` from the bucket, or takes nothing and says why.
    ///
    /// # Errors
    /// [`IngestError::RateLimited`] with the seconds (at least 1) until `samples` fit;
    /// [`IngestError::BadRequest`] when `samples` exceed the whole bucket.
    pub fn take(&self, samples: usize) -> Result<()> {
        let Some(n) = NonZeroU32::new(samples.min(u32::MAX as usize) as u32) else {
            return Ok(());
        };
        match self.gcra.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(IngestError::RateLimited {
                    reason: format!(
                        "ingestion rate limit of {} samples/s (burst {}) reached; this request has {samples} samples",
                        self.rate.samples_per_second, self.rate.burst
                    ),
                    retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
            Err(_) => Err(IngestError::BadRequest(format!(
                "a request of {samples} samples is larger than the ingestion burst of {} samples: send smaller requests",
                self.rate.burst
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_holds_burst_samples_and_refuses_what_does_not_fit() {
        let l = RateLimiter::new(IngestionRate {
            samples_per_second: 10.0,
            burst: 100,
        })
        .unwrap()
        .unwrap();
        l.take(60).unwrap();
        l.take(40).unwrap();
        // Empty now: 1 sample is 0.1 s away, 50 are 5 s away.
        match l.take(50) {
            Err(IngestError::RateLimited { retry_after_s, .. }) => {
                assert!((4..=5).contains(&retry_after_s), "{retry_after_s}")
            }
            other => panic!("{other:?}"),
        }
        // Larger than the bucket: never.
        assert!(matches!(l.take(101), Err(IngestError::BadRequest(_))));
        assert!(l.take(0).is_ok());
    }

    #[test]
    fn no_rate_is_no_limit_and_bad_rates_are_refused() {
        assert!(
            RateLimiter::new(IngestionRate::default())
                .unwrap()
                .is_none()
        );
        assert!(
            RateLimiter::new(IngestionRate {
                samples_per_second: -1.0,
                burst: 0
            })
            .is_err()
        );
        // Burst 0: one second's worth.
        let l = RateLimiter::new(IngestionRate {
            samples_per_second: 5.0,
            burst: 0,
        })
        .unwrap()
        .unwrap();
        l.take(5).unwrap();
        assert!(matches!(l.take(1), Err(IngestError::RateLimited { .. })));
    }
}
