//! Resource quantities (`100m`, `1.5Gi`, `2e3`), parsed exactly as upstream's
//! `resource.ParseQuantity` reads them, compared and summed, and printed in upstream's
//! canonical form.
//!
//! An [`Amount`] holds nano-units in an `i128`: exact for every suffix from `n` to `Ei`
//! (finer digits round up, as upstream's do).

use std::fmt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Nano-units per unit.
const NANO: i128 = 1_000_000_000;

/// A quantity that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)]
pub struct QuantityError;

/// How a quantity was written, which its canonical form keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Powers of 1000 (`k`, `M`, `m`, none).
    #[default]
    DecimalSi,
    /// Powers of 1024 (`Ki`, `Mi`, ...).
    BinarySi,
    /// `e3`, `E6`.
    DecimalExponent,
}

/// An exact amount of a resource, with the format it was written in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Amount {
    nanos: i128,
    format: Format,
}

impl PartialEq for Amount {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Amount {}

impl PartialOrd for Amount {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Amount {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::ops::Add for Amount {
    type Output = Amount;
    /// The sum, in the format of `self` (of `other` when `self` is zero), as upstream's
    /// `Quantity.Add`.
    fn add(self, other: Amount) -> Amount {
        let format = if self.nanos == 0 { other.format } else { self.format };
        Amount { nanos: self.nanos.saturating_add(other.nanos), format }
    }
}

impl std::ops::Sub for Amount {
    type Output = Amount;
    /// The difference, in the format of `self` (of `other` when `self` is zero), as
    /// upstream's `Quantity.Sub`.
    fn sub(self, other: Amount) -> Amount {
        let format = if self.nanos == 0 { other.format } else { self.format };
        Amount { nanos: self.nanos.saturating_sub(other.nanos), format }
    }
}

impl Amount {
    /// Zero, written as decimal.
    pub const ZERO: Amount = Amount { nanos: 0, format: Format::DecimalSi };

    /// Parses a quantity's text.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let text = text.trim();
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let number_end =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(QuantityError);
        }
        let (format, base, exponent): (Format, i128, u32) = match suffix {
            "" => (Format::DecimalSi, 10, 0),
            "n" => (Format::DecimalSi, 10, 0),
            "u" => (Format::DecimalSi, 10, 0),
            "m" => (Format::DecimalSi, 10, 0),
            "k" => (Format::DecimalSi, 10, 3),
            "M" => (Format::DecimalSi, 10, 6),
            "G" => (Format::DecimalSi, 10, 9),
            "T" => (Format::DecimalSi, 10, 12),
            "P" => (Format::DecimalSi, 10, 15),
            "E" => (Format::DecimalSi, 10, 18),
            "Ki" => (Format::BinarySi, 2, 10),
            "Mi" => (Format::BinarySi, 2, 20),
            "Gi" => (Format::BinarySi, 2, 30),
            "Ti" => (Format::BinarySi, 2, 40),
            "Pi" => (Format::BinarySi, 2, 50),
            "Ei" => (Format::BinarySi, 2, 60),
            s if s.starts_with(['e', 'E']) => {
                let exp: i32 = s[1..].parse().map_err(|_| QuantityError)?;
                if !(-9..=18).contains(&exp) {
                    return Err(QuantityError);
                }
                return scaled(whole, fraction, exp + 9, negative, Format::DecimalExponent);
            }
            _ => return Err(QuantityError),
        };
        // Decimal suffixes below one: n, u, m shift the nano scale.
        let nano_exponent: i32 = match suffix {
            "n" => 0,
            "u" => 3,
            "m" => 6,
            _ if base == 10 => exponent as i32 + 9,
            _ => 9,
        };
        let amount = scaled(whole, fraction, nano_exponent, negative, format)?;
        if base == 2 {
            let factor = 1i128 << exponent;
            return Ok(Amount { nanos: amount.nanos.saturating_mul(factor), format });
        }
        Ok(amount)
    }

    /// Reads a `Quantity`.
    pub fn of(quantity: &Quantity) -> Result<Self, QuantityError> {
        Self::parse(&quantity.0)
    }

    /// A whole number of units, written as decimal (upstream's `NewQuantity(n, DecimalSI)`).
    pub fn units(n: i64) -> Self {
        Amount { nanos: i128::from(n).saturating_mul(NANO), format: Format::DecimalSi }
    }

    /// The amount rounded up to whole units (upstream's `RoundUp(0)`), in the same format.
    pub fn round_up_units(self) -> Self {
        Amount { nanos: ceil_div(self.nanos, NANO).saturating_mul(NANO), format: self.format }
    }

    /// Whether the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The amount as a `Quantity`, in its canonical form.
    pub fn to_quantity(&self) -> Quantity {
        Quantity(self.to_string())
    }

    /// Upstream's `MilliValue`: thousandths, rounded up.
    pub fn milli_value(&self) -> i128 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// Upstream's `Value`: units, rounded up.
    pub fn value(&self) -> i128 {
        ceil_div(self.nanos, NANO)
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// The raw nano-units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && a > 0 { q + 1 } else { q }
}

/// `whole.fraction` times 10^`exponent`, in nano-units (rounded up past nanos).
fn scaled(
    whole: &str,
    fraction: &str,
    exponent: i32,
    negative: bool,
    format: Format,
) -> Result<Amount, QuantityError> {
    let digits = format!("{whole}{fraction}");
    let exponent = exponent - fraction.len() as i32;
    let digits = digits.trim_start_matches('0');
    let mut value: i128 = 0;
    let mut rounded_up = false;
    let keep = if exponent >= 0 {
        digits.len()
    } else {
        digits.len().saturating_sub((-exponent) as usize)
    };
    for (i, c) in digits.chars().enumerate() {
        let d = i128::from(c.to_digit(10).ok_or(QuantityError)? as u8);
        if i < keep {
            value = value.checked_mul(10).and_then(|v| v.checked_add(d)).ok_or(QuantityError)?;
        } else if d != 0 {
            rounded_up = true;
        }
    }
    if exponent > 0 {
        value = value
            .checked_mul(10i128.checked_pow(exponent as u32).ok_or(QuantityError)?)
            .ok_or(QuantityError)?;
    }
    if rounded_up {
        value += 1;
    }
    Ok(Amount { nanos: if negative { -value } else { value }, format })
}

impl fmt::Display for Amount {
    /// Upstream's canonical form: the largest suffix that keeps the number whole (`1k`,
    /// `500m`, `256Mi`), binary suffixes for amounts written in them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.nanos < 0 { "-" } else { "" };
        let nanos = self.nanos.abs();
        if self.format == Format::BinarySi && nanos % NANO == 0 && nanos != 0 {
            let units = nanos / NANO;
            for (power, suffix) in
                [(60, "Ei"), (50, "Pi"), (40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")]
            {
                if units % (1i128 << power) == 0 {
                    return write!(f, "{sign}{}{suffix}", units >> power);
                }
            }
            return write!(f, "{sign}{units}");
        }
        if nanos == 0 {
            return write!(f, "0");
        }
        let suffixes = [
            (27, "E"),
            (24, "P"),
            (21, "T"),
            (18, "G"),
            (15, "M"),
            (12, "k"),
            (9, ""),
            (6, "m"),
            (3, "u"),
            (0, "n"),
        ];
        for (power, suffix) in suffixes {
            let unit = 10i128.pow(power);
            if nanos % unit == 0 {
                return match self.format {
                    Format::DecimalExponent if power >= 9 => {
                        let e = power - 9;
                        if e == 0 {
                            write!(f, "{sign}{}", nanos / unit)
                        } else {
                            write!(f, "{sign}{}e{e}", nanos / unit)
                        }
                    }
                    _ => write!(f, "{sign}{}{suffix}", nanos / unit),
                };
            }
        }
        write!(f, "{sign}{nanos}n")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]

    use super::*;

    #[test]
    fn quantities_parse_to_exact_amounts() {
        let cases: &[(&str, i128)] = &[
            ("1", 1_000_000_000),
            ("100m", 100_000_000),
            ("0.5", 500_000_000),
            ("1.5Gi", 1_610_612_736 * NANO),
            ("128Mi", 134_217_728 * NANO),
            ("2k", 2_000 * NANO),
            ("1e3", 1_000 * NANO),
            ("5n", 5),
            ("+3", 3 * NANO),
            ("-2m", -2_000_000),
            ("0.0000000001", 1),
        ];
        for (text, nanos) in cases {
            assert_eq!(Amount::parse(text).map(|a| a.nanos()), Ok(*nanos), "{text}");
        }
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for text in ["", "abc", "1Z", "1..2", "m", "1e99"] {
            assert_eq!(Amount::parse(text), Err(QuantityError), "{text}");
        }
    }

    #[test]
    fn amounts_print_canonically_as_upstream() {
        let cases = [
            ("50m", "50m"),
            ("0.05", "50m"),
            ("1000m", "1"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("1024Mi", "1Gi"),
            ("1500Mi", "1500Mi"),
            ("0", "0"),
        ];
        for (text, canonical) in cases {
            assert_eq!(Amount::parse(text).unwrap().to_string(), canonical, "{text}");
        }
    }

    #[test]
    fn comparisons_and_milli_values_round_up() {
        assert!(Amount::parse("50m").unwrap() < Amount::parse("0.1").unwrap());
        assert_eq!(Amount::parse("1Gi").unwrap(), Amount::parse("1073741824").unwrap());
        assert_eq!(Amount::parse("1n").unwrap().milli_value(), 1);
        assert_eq!(Amount::parse("1.5").unwrap().value(), 2);
        let sum = Amount::parse("128Mi").unwrap() + Amount::parse("128Mi").unwrap();
        assert_eq!(sum.to_string(), "256Mi");
    }

    #[test]
    fn arithmetic_keeps_formats_as_upstream() {
        let gi = Amount::parse("1Gi").unwrap();
        // Zero takes the other side's format, as upstream's Add and Sub.
        assert_eq!((Amount::ZERO + gi).to_string(), "1Gi");
        assert_eq!((gi - Amount::parse("512Mi").unwrap()).to_string(), "512Mi");
        assert_eq!(
            (Amount::parse("1").unwrap() - Amount::parse("1500m").unwrap()).to_string(),
            "-500m"
        );
        assert!((Amount::ZERO - gi).is_negative());
        assert_eq!(Amount::units(3).to_string(), "3");
        assert_eq!(Amount::parse("1500m").unwrap().round_up_units().to_string(), "2");
        assert_eq!(Amount::parse("1.5Ki").unwrap().round_up_units().to_string(), "1536");
        assert_eq!(Amount::parse("100m").unwrap().to_quantity().0, "100m");
    }
}
