//! Storage sizes compared as upstream's `resource.Quantity` compares them: by value, whatever
//! the notation (`1Gi` equals `1024Mi` and `1073741824`; `1G` is smaller than `1Gi`). The
//! binder only compares capacities with requests, so a quantity is read into a count of
//! nano-units (upstream's finest precision), saturating at the extremes.

use std::cmp::Ordering;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The value of `quantity` in nano-units (10⁻⁹), rounded up below that precision as upstream
/// rounds; `None` when it is not a quantity.
pub fn nanos(quantity: &str) -> Option<i128> {
    let s = quantity.trim();
    let (negative, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    // (power of two, power of ten) the suffix multiplies by.
    let (twos, tens): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        exponent if exponent.starts_with(['e', 'E']) => (0, exponent[1..].parse().ok()?),
        _ => return None,
    };
    let mut mantissa: i128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa.saturating_mul(10).saturating_add(i128::from(digit - b'0'));
    }
    mantissa = mantissa.saturating_mul(1i128.checked_shl(twos).unwrap_or(i128::MAX));
    let exponent = tens + 9 - fraction.len() as i32;
    let value = if exponent >= 0 {
        (0..exponent).fold(mantissa, |v, _| v.saturating_mul(10))
    } else {
        let divisor = (0..-exponent).try_fold(1i128, |d, _| d.checked_mul(10));
        match divisor {
            Some(d) => mantissa / d + i128::from(mantissa % d != 0),
            None => i128::from(mantissa != 0),
        }
    };
    Some(if negative { -value } else { value })
}

/// The value of an optional quantity: absent or unreadable counts as zero, as upstream's zero
/// `Quantity`.
pub fn value(quantity: Option<&Quantity>) -> i128 {
    quantity.and_then(|q| nanos(&q.0)).unwrap_or(0)
}

/// How two optional quantities compare by value.
pub fn compare(a: Option<&Quantity>, b: Option<&Quantity>) -> Ordering {
    value(a).cmp(&value(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notations_compare_by_value() {
        let cases: &[(&str, &str, Ordering)] = &[
            ("1Gi", "1024Mi", Ordering::Equal),
            ("1Gi", "1073741824", Ordering::Equal),
            ("1G", "1Gi", Ordering::Less),
            ("1.5Gi", "1536Mi", Ordering::Equal),
            ("2Gi", "1.5Gi", Ordering::Greater),
            ("1e3", "1k", Ordering::Equal),
            ("1E3", "1000", Ordering::Equal),
            ("1E", "1000P", Ordering::Equal),
            ("500m", "1", Ordering::Less),
            ("0.5", "500m", Ordering::Equal),
            ("100Mi", "100M", Ordering::Greater),
        ];
        for (a, b, want) in cases {
            let got = compare(Some(&Quantity(a.to_string())), Some(&Quantity(b.to_string())));
            assert_eq!(got, *want, "{a} against {b}");
        }
    }

    #[test]
    fn absent_or_unreadable_quantities_count_as_zero() {
        assert_eq!(value(None), 0);
        assert_eq!(value(Some(&Quantity("lots".into()))), 0);
        assert_eq!(nanos("1Gx"), None);
        assert_eq!(nanos(""), None);
        assert_eq!(nanos("1.2.3"), None);
    }

    #[test]
    fn below_nano_precision_rounds_up_and_huge_values_saturate() {
        assert_eq!(nanos("1e-10"), Some(1));
        assert_eq!(nanos("1n"), Some(1));
        assert_eq!(nanos("-1"), Some(-1_000_000_000));
        assert_eq!(nanos("1e100"), Some(i128::MAX));
    }
}
