//! Latency samples and their summary.

use std::time::Duration;

use serde_json::{Value, json};

/// Latencies of one measured operation.
#[derive(Debug, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Records one latency.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// Adds the samples of another set.
    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// The `q` quantile (0..=1) in milliseconds.
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let index = ((self.0.len() - 1) as f64 * q).round() as usize;
        self.0[index].as_secs_f64() * 1000.0
    }

    /// Count, throughput over `elapsed`, p50 and p99.
    pub fn summary(&mut self, elapsed: Duration) -> Value {
        let count = self.0.len();
        json!({
            "count": count,
            "per_second": (count as f64 / elapsed.as_secs_f64()).round(),
            "p50_ms": round3(self.quantile_ms(0.5)),
            "p99_ms": round3(self.quantile_ms(0.99)),
        })
    }
}

/// Rounds to three decimals.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Prints a benchmark's results as JSON, and writes them to `output` too when given.
pub fn report(results: &Value, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(results)?;
    println!("{text}");
    if let Some(path) = output {
        std::fs::write(path, format!("{text}\n"))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
