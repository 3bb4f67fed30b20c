//! Whether a Kubernetes quantity is positive.
//!
//! The resources policy must tell `limits.memory: 1Gi` from `limits.memory: "0"`: at run
//! time a zero limit is no limit at all, and a zero request or limit also slips past
//! `requests.*`/`limits.*` ResourceQuotas. The apiserver sends canonical quantities
//! (`"0"`), but templates and hand-made reviews may carry any spelling the grammar allows
//! (`0m`, `0Gi`, `0.0`, `.0`, `0e3`, `+0`, `-1`), so the sign and the digits are read
//! rather than the string compared. No crate in the dependency tree parses quantities
//! (k8s-openapi keeps them as strings), and only the sign of the number is needed, not its
//! value, so this is a small reader of the grammar of `k8s.io/apimachinery`'s
//! `resource.ParseQuantity`:
//!
//! ```text
//! <quantity>        ::= <signedNumber><suffix>
//! <signedNumber>    ::= <number> | <sign><number>
//! <sign>            ::= "+" | "-"
//! <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
//! <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
//! <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
//! <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E
//! <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>
//! ```
//!
//! The suffix only scales the number, so a quantity is positive exactly when its sign is not
//! `-` and its number has a non-zero digit (Kubernetes rounds anything below `1n` up to
//! `1n`, so no positive number becomes zero).

/// True when `quantity` is a well-formed quantity greater than zero. Anything that is not a
/// quantity is not positive: the policy refuses what it cannot read rather than guess.
pub fn is_positive(quantity: &str) -> bool {
    parse_sign(quantity) == Some(Sign::Positive)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sign {
    Positive,
    Zero,
    Negative,
}

/// The sign of a well-formed quantity, `None` for anything else. Surrounding whitespace is
/// ignored, as the apiserver's JSON decoding of a quantity ignores it.
fn parse_sign(quantity: &str) -> Option<Sign> {
    let text = quantity.trim();
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let dots = number.len() - digits;
    if digits == 0 || dots > 1 || !is_suffix(suffix) {
        return None;
    }
    Some(if !number.chars().any(|c| ('1'..='9').contains(&c)) {
        Sign::Zero
    } else if negative {
        Sign::Negative
    } else {
        Sign::Positive
    })
}

fn is_suffix(suffix: &str) -> bool {
    const SI: [&str; 16] = [
        "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    if SI.contains(&suffix) {
        return true;
    }
    // A decimal exponent: `e` or `E`, an optional sign, and digits. (`E` alone is exa,
    // matched above.)
    let Some(exponent) = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E'))
    else {
        return false;
    };
    let digits = exponent
        .strip_prefix('-')
        .or_else(|| exponent.strip_prefix('+'))
        .unwrap_or(exponent);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_in_every_spelling_is_not_positive() {
        for zero in [
            "0", "0m", "0n", "0u", "0k", "0M", "0Gi", "0Ki", "0Ei", "0E", "0.0", "0.", ".0", "00",
            "000.000", "0e3", "0E3", "0e-3", "0e+3", "+0", "-0", "-0.0Gi", " 0 ",
        ] {
            assert_eq!(parse_sign(zero), Some(Sign::Zero), "{zero:?}");
            assert!(!is_positive(zero), "{zero:?}");
        }
    }

    #[test]
    fn negative_quantities_are_not_positive() {
        for negative in ["-1", "-1m", "-0.5Gi", "-1e3", "-.1"] {
            assert_eq!(parse_sign(negative), Some(Sign::Negative), "{negative:?}");
            assert!(!is_positive(negative), "{negative:?}");
        }
    }

    #[test]
    fn positive_quantities_in_every_spelling() {
        for positive in [
            "1", "100m", "0.5", ".5", "5.", "64Mi", "1Gi", "2Ei", "1E", "1e3", "1E3", "1e-3",
            "1e+3", "+1", "0.001m", "1n", "1u", "0000001k", "10.10Ti",
        ] {
            assert!(is_positive(positive), "{positive:?}");
        }
    }

    #[test]
    fn what_is_not_a_quantity_is_not_positive() {
        for bad in [
            "", " ", "-", "+", ".", "m", "Gi", "1..0", "1.0.0", "1x", "1mi", "1gi", "1KiB", "1e",
            "1e-", "1e1.5", "1ee3", "--1", "+-1", "1 Gi", "one", "1,5", "0x10", "½",
        ] {
            assert_eq!(parse_sign(bad), None, "{bad:?}");
            assert!(!is_positive(bad), "{bad:?}");
        }
    }
}
