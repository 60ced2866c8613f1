//! The markdown table the bench prints (pasteable into README's performance section).

use std::time::Duration;

use hdrhistogram::Histogram;

pub struct Row {
    pub scenario: String,
    pub metric: String,
    pub value: String,
    pub target: String,
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
}

impl Report {
    pub fn row(&mut self, scenario: &str, metric: &str, value: String, target: &str) {
        self.rows.push(Row {
            scenario: scenario.to_string(),
            metric: metric.to_string(),
            value,
            target: target.to_string(),
        });
    }

    pub fn latency_rows(
        &mut self,
        scenario: &str,
        what: &str,
        hist: &Histogram<u64>,
        p99_target: &str,
    ) {
        self.row(
            scenario,
            &format!("{what} p50"),
            ms(hist.value_at_quantile(0.50)),
            "—",
        );
        self.row(
            scenario,
            &format!("{what} p99"),
            ms(hist.value_at_quantile(0.99)),
            p99_target,
        );
        self.row(scenario, &format!("{what} max"), ms(hist.max()), "—");
    }

    pub fn table(&self) -> String {
        let header = ["scenario", "metric", "value", "target"];
        let cells: Vec<[&str; 4]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.scenario.as_str(),
                    r.metric.as_str(),
                    r.value.as_str(),
                    r.target.as_str(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cols: [&str; 4]| {
            let padded: Vec<String> = cols
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        for row in cells {
            out.push_str(&line(row));
        }
        out
    }
}

/// Microseconds → "1.23 ms".
pub fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// 12345.6 → "12,346".
pub fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(12345.6), "12,346");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }
}
