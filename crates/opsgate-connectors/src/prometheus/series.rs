//! Arithmetic on one time series: summary statistics, the trend an agent should notice, and
//! downsampling to a few dozen points that keep the shape (peaks included) within the output
//! budget.

use serde::Serialize;

/// One sample: Unix seconds and value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub time: f64,
    pub value: f64,
}

/// Statistics over a series' finite values (`NaN` from `0/0` and infinities are skipped: they
/// mean "no traffic" or "no bucket", not a measurement).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub n_points: usize,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    /// The latest finite value and its time: "current".
    pub last: f64,
    pub last_time: f64,
}

pub fn stats(points: &[Point]) -> Option<Stats> {
    let mut finite = points.iter().filter(|point| point.value.is_finite());
    let first = finite.next()?;
    let mut stats =
        Stats { n_points: 1, min: first.value, max: first.value, avg: 0.0, last: first.value, last_time: first.time };
    let mut sum = first.value;
    for point in finite {
        stats.n_points += 1;
        stats.min = stats.min.min(point.value);
        stats.max = stats.max.max(point.value);
        sum += point.value;
        if point.time >= stats.last_time {
            stats.last = point.value;
            stats.last_time = point.time;
        }
    }
    stats.avg = sum / stats.n_points as f64;
    Some(stats)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Rising,
    Falling,
    Flat,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Rising => "rising",
            Direction::Falling => "falling",
            Direction::Flat => "flat",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    pub direction: Direction,
    /// Mean of the last third minus mean of the first third.
    pub change: f64,
    /// `change` relative to the first third's mean; `None` when that mean is 0.
    pub relative: Option<f64>,
}

impl Trend {
    /// `rising (+12%)`, `flat (+0.4%)`; the absolute change when the start was 0: `rising (+0.3)`.
    pub fn describe(&self) -> String {
        let signed = |value: f64| {
            let sign = if value >= 0.0 { "+" } else { "" };
            format!("{sign}{}", crate::format::number(value))
        };
        match self.relative {
            // Below a tenth of a percent the number is float noise, not information.
            Some(relative) if relative.abs() < 0.001 => self.direction.as_str().to_string(),
            Some(relative) => format!("{} ({}%)", self.direction.as_str(), signed(relative * 100.0)),
            None => format!("{} ({})", self.direction.as_str(), signed(self.change)),
        }
    }
}

/// Changes smaller than this share of the larger third-mean are noise, not a trend.
pub const TREND_TOLERANCE: f64 = 0.05;

/// The trend of a series: the mean of its last third against the mean of its first third.
/// Thirds rather than end points, so one noisy sample does not decide; a relative tolerance, so
/// a flat series at 0.1 with jitter reads flat whatever its scale. `None` under two finite points.
pub fn trend(points: &[Point], tolerance: f64) -> Option<Trend> {
    let values: Vec<f64> = points.iter().map(|point| point.value).filter(|value| value.is_finite()).collect();
    if values.len() < 2 {
        return None;
    }
    let third = (values.len() / 3).max(1);
    let mean = |slice: &[f64]| slice.iter().sum::<f64>() / slice.len() as f64;
    let first = mean(&values[..third]);
    let last = mean(&values[values.len() - third..]);
    let change = last - first;
    let scale = first.abs().max(last.abs());
    let direction = if scale == 0.0 || change.abs() <= tolerance * scale {
        Direction::Flat
    } else if change > 0.0 {
        Direction::Rising
    } else {
        Direction::Falling
    };
    // Rounded to a millionth: ratios that are equal in fact differ in the last bits of a float.
    let relative = (first != 0.0).then(|| (change / first.abs() * 1e6).round() / 1e6);
    Some(Trend { direction, change, relative })
}

/// At most `max_points` points that keep the series' shape: largest-triangle-three-buckets,
/// which keeps the first and last points and, per bucket, the point that makes the largest
/// triangle with its neighbours, so spikes survive where averaging would flatten them.
/// Non-finite values are dropped first.
pub fn downsample(points: &[Point], max_points: usize) -> Vec<Point> {
    let points: Vec<Point> = points.iter().copied().filter(|point| point.value.is_finite()).collect();
    if points.len() <= max_points {
        return points;
    }
    // With fewer than three slots there are no buckets: keep the latest point (what "now" is),
    // then the first (where the shown range starts).
    let (Some(&first), Some(&last)) = (points.first(), points.last()) else {
        return points;
    };
    match max_points {
        0 => return Vec::new(),
        1 => return vec![last],
        2 => return vec![first, last],
        _ => {}
    }
    let n_buckets = max_points - 2;
    let bucket_size = (points.len() - 2) as f64 / n_buckets as f64;
    let mut sampled = Vec::with_capacity(max_points);
    sampled.push(first);
    let mut previous = first;
    for bucket in 0..n_buckets {
        let start = 1 + (bucket as f64 * bucket_size).floor() as usize;
        let end = (1 + ((bucket + 1) as f64 * bucket_size).floor() as usize).min(points.len() - 1);
        // The next bucket's average (or the last point) is the third corner of the triangle.
        let next_start = end;
        let next_end = (1 + ((bucket + 2) as f64 * bucket_size).floor() as usize).min(points.len());
        let next = if next_start < next_end && bucket + 1 < n_buckets {
            let slice = &points[next_start..next_end];
            let n = slice.len() as f64;
            Point {
                time: slice.iter().map(|point| point.time).sum::<f64>() / n,
                value: slice.iter().map(|point| point.value).sum::<f64>() / n,
            }
        } else {
            last
        };
        let candidates = &points[start..end.max(start + 1).min(points.len() - 1)];
        let best = candidates
            .iter()
            .copied()
            .map(|point| {
                let area = ((previous.time - next.time) * (point.value - previous.value)
                    - (previous.time - point.time) * (next.value - previous.value))
                    .abs();
                (area, point)
            })
            .fold(None::<(f64, Point)>, |best, candidate| match best {
                Some(best) if best.0 >= candidate.0 => Some(best),
                _ => Some(candidate),
            });
        if let Some((_, point)) = best {
            sampled.push(point);
            previous = point;
        }
    }
    sampled.push(last);
    sampled
}

/// Parses Prometheus' `[time, "value"]` sample value, which is a string so that `NaN` and
/// `±Inf` survive JSON.
pub fn parse_value(text: &str) -> f64 {
    text.parse::<f64>().unwrap_or(f64::NAN)
}
