//! An `IntOrString` that is a count or a percentage of a total (upstream's
//! `GetScaledValueFromIntOrPercent`), as `maxSurge`, `maxUnavailable` and `minAvailable` are.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// `value` as a count: an int as it is, a percentage of `total` rounded up or down. A string
/// that is not a percentage is an error.
pub fn scaled(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => percent(s, total, round_up),
    }
}

/// `s` (`"25%"`) of `total`, rounded up or down.
pub fn percent(s: &str, total: i32, round_up: bool) -> Result<i32, String> {
    let p: i64 = s
        .strip_suffix('%')
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
    let scaled = i64::from(total) * p;
    let v = if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) };
    Ok(i32::try_from(v).unwrap_or(i32::MAX))
}
