//! The overview's charts, drawn on the server as inline SVG: one slot per hour over the last
//! day, bars for a count, lines for durations. No script, no library: a few rectangles and
//! polylines that any browser shows.

use chrono::{DateTime, Duration, Timelike, Utc};
use maud::{Markup, html};

use crate::store::{DeliveryTime, HourCount};

/// Hours a chart covers.
pub const HOURS: usize = 24;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 12.0;

/// The start of the first hour of a chart that ends with the hour `now` is in.
pub fn first_hour(now: DateTime<Utc>) -> DateTime<Utc> {
    let this_hour = now
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(now);
    this_hour - Duration::hours(HOURS as i64 - 1)
}

/// The slot of `at` in a chart starting at `first`, if it falls in one.
fn slot(first: DateTime<Utc>, at: DateTime<Utc>) -> Option<usize> {
    let hours = (at - first).num_seconds().div_euclid(3600);
    usize::try_from(hours).ok().filter(|h| *h < HOURS)
}

/// Orders per hour slot.
pub fn order_counts(first: DateTime<Utc>, counts: &[HourCount]) -> [u64; HOURS] {
    let mut slots = [0; HOURS];
    for count in counts {
        if let Some(i) = slot(first, count.hour) {
            slots[i] += count.orders;
        }
    }
    slots
}

/// The median and the 95th percentile of the webhook → Mamut time per hour slot, in
/// seconds, by the hour each event was delivered in; `None` for an hour without deliveries.
pub fn latencies(first: DateTime<Utc>, times: &[DeliveryTime]) -> [Option<(f64, f64)>; HOURS] {
    let mut per_hour: Vec<Vec<f64>> = vec![Vec::new(); HOURS];
    for time in times {
        if let Some(i) = slot(first, time.delivered_at) {
            let ms = (time.delivered_at - time.received_at)
                .num_milliseconds()
                .max(0);
            per_hour[i].push(ms as f64 / 1000.0);
        }
    }
    let mut out = [None; HOURS];
    for (i, mut values) in per_hour.into_iter().enumerate() {
        if values.is_empty() {
            continue;
        }
        values.sort_by(f64::total_cmp);
        out[i] = Some((percentile(&values, 50.0), percentile(&values, 95.0)));
    }
    out
}

/// The nearest-rank percentile `p` of sorted, non-empty `values`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A number of seconds for an axis: two decimals below ten, none above.
fn seconds(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2} s")
    } else {
        format!("{value:.0} s")
    }
}

/// A value's height in the plot, `max` at the top.
fn y(value: f64, max: f64) -> f64 {
    let plot = HEIGHT - BOTTOM - TOP;
    HEIGHT - BOTTOM - if max > 0.0 { value / max * plot } else { 0.0 }
}

fn slot_width() -> f64 {
    (WIDTH - LEFT) / HOURS as f64
}

/// The frame: the value axis with its largest value, and the hours every six slots.
fn axes(first: DateTime<Utc>, max_label: &str) -> Markup {
    html! {
        line.axis x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH) y2=(HEIGHT - BOTTOM) stroke="#d9dde5" {}
        line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(HEIGHT - BOTTOM) stroke="#d9dde5" {}
        text x=(LEFT - 6.0) y=(TOP + 10.0) text-anchor="end" font-size="11" fill="#5b6474" { (max_label) }
        text x=(LEFT - 6.0) y=(HEIGHT - BOTTOM) text-anchor="end" font-size="11" fill="#5b6474" { "0" }
        @for i in (0..HOURS).step_by(6) {
            text x=(LEFT + i as f64 * slot_width()) y=(HEIGHT - 6.0) font-size="11" fill="#5b6474" {
                ((first + Duration::hours(i as i64)).format("%H:00"))
            }
        }
    }
}

/// A bar per hour; `label` names the chart for readers of the page that cannot see it.
pub fn bars(first: DateTime<Utc>, values: &[u64; HOURS], label: &str) -> Markup {
    let max = values.iter().copied().max().unwrap_or(0);
    let w = slot_width();
    html! {
        svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(label) {
            title { (label) }
            (axes(first, &max.to_string()))
            @for (i, value) in values.iter().enumerate() {
                @if *value > 0 {
                    rect x=(format!("{:.1}", LEFT + i as f64 * w + 2.0))
                        y=(format!("{:.1}", y(*value as f64, max as f64)))
                        width=(format!("{:.1}", w - 4.0))
                        height=(format!("{:.1}", HEIGHT - BOTTOM - y(*value as f64, max as f64)))
                        fill="#1f5fbf" {
                        title { ((first + Duration::hours(i as i64)).format("%H:00")) ": " (value) }
                    }
                }
            }
        }
    }
}

/// Two lines per hour (median and 95th percentile, in seconds); hours without a value are
/// left as gaps. `legend` names the two lines.
pub fn lines(
    first: DateTime<Utc>,
    values: &[Option<(f64, f64)>; HOURS],
    label: &str,
    legend: (&str, &str),
) -> Markup {
    let max = values
        .iter()
        .flatten()
        .map(|(_, p95)| *p95)
        .fold(0.0_f64, f64::max);
    let w = slot_width();
    let x = |i: usize| LEFT + i as f64 * w + w / 2.0;
    let points = |pick: fn(&(f64, f64)) -> f64| -> String {
        values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.as_ref()
                    .map(|v| format!("{:.1},{:.1}", x(i), y(pick(v), max)))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(label) {
            title { (label) }
            (axes(first, &seconds(max)))
            polyline points=(points(|v| v.1)) fill="none" stroke="#b42318" stroke-width="2" {}
            polyline points=(points(|v| v.0)) fill="none" stroke="#1f5fbf" stroke-width="2" {}
            @for (i, v) in values.iter().enumerate() {
                @if let Some((median, p95)) = v {
                    circle cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(*median, max))) r="3" fill="#1f5fbf" {
                        title { ((first + Duration::hours(i as i64)).format("%H:00")) " " (legend.0) ": " (format!("{median:.2} s")) }
                    }
                    circle cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(*p95, max))) r="3" fill="#b42318" {
                        title { ((first + Duration::hours(i as i64)).format("%H:00")) " " (legend.1) ": " (format!("{p95:.2} s")) }
                    }
                }
            }
        }
        p.legend.muted {
            span style="color:#1f5fbf" { "● " (legend.0) } " "
            span style="color:#b42318" { "● " (legend.1) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a time")
            .with_timezone(&Utc)
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 95.0), 95.0);
        assert_eq!(percentile(&[3.0], 95.0), 3.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn values_fall_in_their_hour_and_older_ones_are_left_out() {
        let now = at("2026-12-02T10:30:00Z");
        let first = first_hour(now);
        assert_eq!(first, at("2026-12-01T11:00:00Z"));
        let counts = [
            HourCount {
                hour: at("2026-12-02T10:00:00Z"),
                orders: 4,
            },
            HourCount {
                hour: at("2026-12-01T11:00:00Z"),
                orders: 1,
            },
            HourCount {
                hour: at("2026-12-01T09:00:00Z"),
                orders: 9,
            },
        ];
        let slots = order_counts(first, &counts);
        assert_eq!((slots[0], slots[HOURS - 1]), (1, 4));
        assert_eq!(slots.iter().sum::<u64>(), 5);
        let times = [
            DeliveryTime {
                received_at: at("2026-12-02T10:00:00Z"),
                delivered_at: at("2026-12-02T10:00:02Z"),
            },
            DeliveryTime {
                received_at: at("2026-12-02T10:01:00Z"),
                delivered_at: at("2026-12-02T10:01:04Z"),
            },
        ];
        let lat = latencies(first, &times);
        assert_eq!(lat[HOURS - 1], Some((2.0, 4.0)));
        assert_eq!(lat[0], None);
        let svg = lines(first, &lat, "latency", ("median", "p95")).into_string();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
        let svg = bars(first, &slots, "orders").into_string();
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
    }
}
