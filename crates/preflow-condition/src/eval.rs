//! Value semantics of the comparison operators: the type-adaptation table and the null table
//! of `spec/conditions.md` §4.2-4.3, Java string ordering, and Java number formatting.
//!
//! Everything here works on borrowed [`Value`]s and allocates nothing: when a number has to
//! be compared with a string, it is formatted into a [`NumText`] buffer on the stack, the way
//! Java's `toString` would print it.

use crate::pattern::bytes_eq;
use crate::value::Value;
use core::cmp::Ordering;
use core::fmt::{self, Write};

/// A relational operator subject to type adaptation and the null table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rel {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

/// `lhs rel rhs` with the null table (§4.3) and the type-adaptation table (§4.2).
///
/// Null cells: `=` is true only when both sides are null; `!=` is true when exactly one side
/// is null; `>` and `<` are true when only the left side is null; `>=` is true when the right
/// side is null; `<=` is true when the left side is null. An [`Value::Object`] on either side
/// of a non-null comparison makes it false (the comparison is "not performed"), for `!=`
/// too.
pub(crate) fn relate(rel: Rel, lhs: Value<'_>, rhs: Value<'_>) -> bool {
    match (lhs, rhs) {
        (Value::Null, Value::Null) => matches!(rel, Rel::Eq | Rel::Ge | Rel::Le),
        (Value::Null, _) => matches!(rel, Rel::Ne | Rel::Gt | Rel::Lt | Rel::Le),
        (_, Value::Null) => matches!(rel, Rel::Ne | Rel::Ge),
        _ => {
            if matches!(rel, Rel::Eq | Rel::Ne) {
                match equal(lhs, rhs) {
                    Some(eq) => eq == (rel == Rel::Eq),
                    None => false,
                }
            } else {
                match compare(lhs, rhs) {
                    Some(ord) => match rel {
                        Rel::Gt => ord == Ordering::Greater,
                        Rel::Ge => ord != Ordering::Less,
                        Rel::Lt => ord == Ordering::Less,
                        Rel::Le => ord != Ordering::Greater,
                        Rel::Eq | Rel::Ne => false,
                    },
                    None => false,
                }
            }
        }
    }
}

/// Equality of two non-null values after adaptation; `None` when the comparison is not
/// performed (an object on either side).
fn equal(lhs: Value<'_>, rhs: Value<'_>) -> Option<bool> {
    match (lhs, rhs) {
        (Value::String(a), Value::String(b)) => Some(bytes_eq(a.as_bytes(), b.as_bytes())),
        (Value::String(s), other) | (other, Value::String(s)) => {
            let text = NumText::of(other)?;
            Some(bytes_eq(s.as_bytes(), text.as_str().as_bytes()))
        }
        _ => compare(lhs, rhs).map(|o| o == Ordering::Equal),
    }
}

/// Ordering of two non-null values after adaptation; `None` when the comparison is not
/// performed.
pub(crate) fn compare(lhs: Value<'_>, rhs: Value<'_>) -> Option<Ordering> {
    match (lhs, rhs) {
        (Value::Null, _) | (_, Value::Null) | (Value::Object, _) | (_, Value::Object) => None,
        (Value::String(a), Value::String(b)) => Some(java_compare(a, b)),
        (Value::String(a), other) => {
            let b = NumText::of(other)?;
            Some(java_compare(a, b.as_str()))
        }
        (other, Value::String(b)) => {
            let a = NumText::of(other)?;
            Some(java_compare(a.as_str(), b))
        }
        (Value::Boolean(a), Value::Boolean(b)) => Some(a.cmp(&b)),
        (a, b) => Some(Num::of(a)?.compare(Num::of(b)?)),
    }
}

/// A numeric operand; Boolean widens to Integer 1 or 0 when compared with a number.
#[derive(Clone, Copy)]
enum Num {
    Integer(i32),
    Long(i64),
    Float(f32),
    Double(f64),
}

impl Num {
    fn of(v: Value<'_>) -> Option<Num> {
        match v {
            Value::Integer(i) => Some(Num::Integer(i)),
            Value::Long(l) => Some(Num::Long(l)),
            Value::Float(f) => Some(Num::Float(f)),
            Value::Double(d) => Some(Num::Double(d)),
            Value::Boolean(b) => Some(Num::Integer(i32::from(b))),
            Value::Null | Value::String(_) | Value::Object => None,
        }
    }

    fn rank(self) -> u8 {
        match self {
            Num::Integer(_) => 0,
            Num::Long(_) => 1,
            Num::Float(_) => 2,
            Num::Double(_) => 3,
        }
    }

    fn as_long(self) -> i64 {
        match self {
            Num::Integer(i) => i64::from(i),
            Num::Long(l) => l,
            // Not reached: only called when both ranks are at most Long.
            Num::Float(f) => f as i64,
            Num::Double(d) => d as i64,
        }
    }

    fn as_float(self) -> f32 {
        match self {
            Num::Integer(i) => i as f32,
            Num::Long(l) => l as f32,
            Num::Float(f) => f,
            Num::Double(d) => d as f32,
        }
    }

    fn as_double(self) -> f64 {
        match self {
            Num::Integer(i) => f64::from(i),
            Num::Long(l) => l as f64,
            Num::Float(f) => f64::from(f),
            Num::Double(d) => d,
        }
    }

    /// Java binary numeric promotion to the wider type, then `compareTo` of that type.
    fn compare(self, other: Num) -> Ordering {
        match self.rank().max(other.rank()) {
            0 | 1 => self.as_long().cmp(&other.as_long()),
            2 => java_float_compare(self.as_float(), other.as_float()),
            _ => java_double_compare(self.as_double(), other.as_double()),
        }
    }
}

/// `Double.compare`: numeric order, except that `-0.0 < 0.0` and NaN equals itself and is
/// greater than everything else.
fn java_double_compare(a: f64, b: f64) -> Ordering {
    match a.partial_cmp(&b) {
        Some(Ordering::Equal) | None => java_double_bits(a).cmp(&java_double_bits(b)),
        Some(o) => o,
    }
}

fn java_double_bits(d: f64) -> i64 {
    if d.is_nan() {
        0x7ff8_0000_0000_0000
    } else {
        d.to_bits() as i64
    }
}

/// `Float.compare`, the `f32` counterpart of [`java_double_compare`].
fn java_float_compare(a: f32, b: f32) -> Ordering {
    match a.partial_cmp(&b) {
        Some(Ordering::Equal) | None => java_float_bits(a).cmp(&java_float_bits(b)),
        Some(o) => o,
    }
}

fn java_float_bits(f: f32) -> i32 {
    if f.is_nan() {
        0x7fc0_0000
    } else {
        f.to_bits() as i32
    }
}

/// Java `String.compareTo`: lexicographic by UTF-16 code unit.
///
/// UTF-8 byte order equals code point order, which differs from UTF-16 order only when a
/// supplementary character meets one in U+E000..=U+FFFF; the byte comparison decides
/// everything up to the first differing byte.
pub(crate) fn java_compare(a: &str, b: &str) -> Ordering {
    if a.is_ascii() || b.is_ascii() {
        // An ASCII byte sorts the same in every encoding, and a multi-byte character sorts
        // after every ASCII one in both UTF-8 and UTF-16.
        return a.as_bytes().cmp(b.as_bytes());
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Case-insensitive equality without allocating, by lowercasing characters on the fly.
pub(crate) fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// Truthiness of a bare operand (§4.6): Boolean `true`, or a String equal to `true` in any
/// ASCII case. Everything else, null included, is false.
pub(crate) fn truthy(v: Value<'_>) -> bool {
    match v {
        Value::Boolean(b) => b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        Value::Null
        | Value::Integer(_)
        | Value::Long(_)
        | Value::Float(_)
        | Value::Double(_)
        | Value::Object => false,
    }
}

/// The longest text [`NumText`] holds. Java's longest `double` rendering is 24 characters
/// (`-1.2345678901234567E-308`), an `i64` at most 20.
const NUM_TEXT_CAP: usize = 40;

/// The Java `toString` text of a non-string scalar, formatted on the stack.
#[derive(Clone, Copy)]
pub(crate) struct NumText {
    buf: [u8; NUM_TEXT_CAP],
    len: usize,
}

impl NumText {
    fn new() -> Self {
        Self {
            buf: [0; NUM_TEXT_CAP],
            len: 0,
        }
    }

    /// The text of `v`, or `None` for null and objects (which have no string form here).
    /// A String is not handled either: callers use the borrowed text directly.
    pub(crate) fn of(v: Value<'_>) -> Option<NumText> {
        let mut t = NumText::new();
        let ok = match v {
            Value::Integer(i) => write!(t, "{i}").is_ok(),
            Value::Long(l) => write!(t, "{l}").is_ok(),
            Value::Float(f) => write_java_float(&mut t, FloatParts::of_f32(f)).is_ok(),
            Value::Double(d) => write_java_float(&mut t, FloatParts::of_f64(d)).is_ok(),
            Value::Boolean(b) => t.write_str(if b { "true" } else { "false" }).is_ok(),
            Value::Null | Value::String(_) | Value::Object => false,
        };
        ok.then_some(t)
    }

    /// The text written so far.
    pub(crate) fn as_str(&self) -> &str {
        self.buf
            .get(..self.len)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

impl Write for NumText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A finite non-zero float broken into its shortest round-trip decimal digits and exponent,
/// or one of the special values.
enum FloatParts {
    Nan,
    Infinite { negative: bool },
    Zero { negative: bool },
    Finite(Digits),
}

/// `negative` `d.ddd × 10^exp`, with up to 17 significant digits (ASCII).
struct Digits {
    negative: bool,
    digits: [u8; 24],
    count: usize,
    exp: i32,
}

impl FloatParts {
    fn of_f64(d: f64) -> Self {
        if d.is_nan() {
            FloatParts::Nan
        } else if d.is_infinite() {
            FloatParts::Infinite { negative: d < 0.0 }
        } else if d == 0.0 {
            FloatParts::Zero {
                negative: d.is_sign_negative(),
            }
        } else {
            Self::from_exp(format_args!("{d:e}"))
        }
    }

    fn of_f32(f: f32) -> Self {
        if f.is_nan() {
            FloatParts::Nan
        } else if f.is_infinite() {
            FloatParts::Infinite { negative: f < 0.0 }
        } else if f == 0.0 {
            FloatParts::Zero {
                negative: f.is_sign_negative(),
            }
        } else {
            Self::from_exp(format_args!("{f:e}"))
        }
    }

    /// Parses Rust's shortest round-trip `{:e}` rendering (`-4.04e2`, `5e-1`).
    fn from_exp(args: fmt::Arguments<'_>) -> Self {
        let mut text = NumText::new();
        if text.write_fmt(args).is_err() {
            return FloatParts::Nan;
        }
        let s = text.as_str();
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (mantissa, exp) = s.split_once('e').unwrap_or((s, "0"));
        let mut digits = Digits {
            negative,
            digits: [b'0'; 24],
            count: 0,
            exp: exp.parse().unwrap_or(0),
        };
        for b in mantissa.bytes().filter(u8::is_ascii_digit) {
            if let Some(slot) = digits.digits.get_mut(digits.count) {
                *slot = b;
                digits.count += 1;
            }
        }
        FloatParts::Finite(digits)
    }
}

/// Writes a float the way Java's `Double.toString` / `Float.toString` do: plain decimal with
/// at least one fractional digit for magnitudes in `[1e-3, 1e7)` (`404.0`, `0.5`,
/// `0.001`), otherwise computerized scientific notation (`1.0E7`, `1.5E-4`).
fn write_java_float(w: &mut impl Write, parts: FloatParts) -> fmt::Result {
    let d = match parts {
        FloatParts::Nan => return w.write_str("NaN"),
        FloatParts::Infinite { negative } => {
            return w.write_str(if negative { "-Infinity" } else { "Infinity" });
        }
        FloatParts::Zero { negative } => return w.write_str(if negative { "-0.0" } else { "0.0" }),
        FloatParts::Finite(d) => d,
    };
    let digits = d.digits.get(..d.count).unwrap_or(&[]);
    let digit = |i: usize| char::from(digits.get(i).copied().unwrap_or(b'0'));
    if d.negative {
        w.write_char('-')?;
    }
    if (-3..7).contains(&d.exp) {
        if d.exp < 0 {
            w.write_str("0.")?;
            for _ in 0..(-d.exp - 1) {
                w.write_char('0')?;
            }
            for i in 0..d.count {
                w.write_char(digit(i))?;
            }
        } else {
            let int_len = usize::try_from(d.exp).unwrap_or(0) + 1;
            for i in 0..int_len {
                w.write_char(digit(i))?;
            }
            w.write_char('.')?;
            if d.count > int_len {
                for i in int_len..d.count {
                    w.write_char(digit(i))?;
                }
            } else {
                w.write_char('0')?;
            }
        }
    } else {
        w.write_char(digit(0))?;
        w.write_char('.')?;
        if d.count > 1 {
            for i in 1..d.count {
                w.write_char(digit(i))?;
            }
        } else {
            w.write_char('0')?;
        }
        write!(w, "E{}", d.exp)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Value::{Boolean, Double, Float, Integer, Long, Null, Object};

    fn s(text: &str) -> Value<'_> {
        Value::String(text)
    }

    fn text(v: Value<'_>) -> String {
        NumText::of(v)
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn null_table() {
        // (op, LHS null, RHS null, both null), spec §4.3.
        let rows = [
            (Rel::Eq, false, false, true),
            (Rel::Ne, true, true, false),
            (Rel::Gt, true, false, false),
            (Rel::Ge, false, true, true),
            (Rel::Lt, true, false, false),
            (Rel::Le, true, false, true),
        ];
        for (rel, lhs_null, rhs_null, both) in rows {
            for other in [s("x"), Integer(5), Double(1.5), Boolean(true), Object] {
                assert_eq!(
                    relate(rel, Null, other),
                    lhs_null,
                    "{rel:?} null vs {other:?}"
                );
                assert_eq!(
                    relate(rel, other, Null),
                    rhs_null,
                    "{rel:?} {other:?} vs null"
                );
            }
            assert_eq!(relate(rel, Null, Null), both, "{rel:?} null vs null");
        }
    }

    #[test]
    fn objects_are_never_compared() {
        for rel in [Rel::Eq, Rel::Ne, Rel::Gt, Rel::Ge, Rel::Lt, Rel::Le] {
            for other in [s("x"), Integer(5), Boolean(false), Object] {
                assert!(!relate(rel, Object, other), "{rel:?} object vs {other:?}");
                assert!(!relate(rel, other, Object), "{rel:?} {other:?} vs object");
            }
        }
    }

    #[test]
    fn string_on_either_side_compares_as_string() {
        assert!(!relate(Rel::Eq, Integer(404), s("400")));
        assert!(relate(Rel::Eq, Integer(404), s("404")));
        assert!(relate(Rel::Eq, s("404"), Integer(404)));
        // "10" < "9" as strings.
        assert!(!relate(Rel::Gt, s("10"), Integer(9)));
        assert!(relate(Rel::Gt, Integer(404), s("1000")));
        assert!(relate(Rel::Eq, Boolean(true), s("true")));
        assert!(!relate(Rel::Eq, Boolean(true), s("TRUE")));
        assert!(relate(Rel::Eq, Double(404.0), s("404.0")));
        assert!(relate(Rel::Eq, Float(0.5), s("0.5")));
        assert!(relate(Rel::Eq, Long(12_321_421_312), s("12321421312")));
        assert!(relate(Rel::Ne, Integer(1), s("01")));
    }

    #[test]
    fn numeric_promotions() {
        assert!(relate(Rel::Eq, Integer(404), Long(404)));
        assert!(relate(Rel::Eq, Integer(404), Double(404.0)));
        assert!(relate(Rel::Eq, Long(5), Float(5.0)));
        assert!(relate(Rel::Gt, Integer(0), Double(-20.1392)));
        assert!(relate(Rel::Lt, Long(i64::from(i32::MAX) + 1), Float(1e10)));
        // Float widened to double is not the double literal 0.1.
        assert!(!relate(Rel::Eq, Float(0.1), Double(0.1)));
        assert!(relate(Rel::Eq, Float(0.1), Float(0.1)));
        // Boolean against a number widens to Integer 1 / 0.
        assert!(relate(Rel::Eq, Boolean(true), Integer(1)));
        assert!(relate(Rel::Lt, Boolean(false), Double(0.5)));
        assert!(relate(Rel::Gt, Boolean(true), Boolean(false)));
        assert!(relate(Rel::Eq, Boolean(false), Boolean(false)));
    }

    #[test]
    fn java_number_order_for_nan_and_zero() {
        assert!(relate(Rel::Eq, Double(f64::NAN), Double(f64::NAN)));
        assert!(relate(Rel::Gt, Double(f64::NAN), Double(f64::INFINITY)));
        assert!(relate(Rel::Lt, Double(-0.0), Double(0.0)));
        assert!(!relate(Rel::Eq, Float(-0.0), Float(0.0)));
    }

    #[test]
    fn ordering_is_by_utf16_code_unit() {
        // U+1F600 is D83D DE00 in UTF-16, below U+FF61; by code point it is above.
        assert_eq!(java_compare("\u{1F600}", "\u{FF61}"), Ordering::Less);
        assert_eq!(java_compare("a\u{1F600}", "a\u{FF61}"), Ordering::Less);
        assert_eq!(java_compare("abc", "abd"), Ordering::Less);
        assert_eq!(java_compare("ab", "abc"), Ordering::Less);
        assert_eq!(java_compare("é", "z"), Ordering::Greater);
        assert!(relate(Rel::Lt, s("\u{1F600}"), s("\u{FF61}")));
    }

    #[test]
    fn case_insensitive_equality() {
        assert!(eq_ignore_case("GET", "get"));
        assert!(eq_ignore_case("ÉTÉ", "été"));
        assert!(!eq_ignore_case("GET", "gets"));
        assert!(!eq_ignore_case("ß", "ss"));
    }

    #[test]
    fn bare_operand_truthiness() {
        assert!(truthy(Boolean(true)));
        assert!(truthy(s("true")));
        assert!(truthy(s("TrUe")));
        assert!(!truthy(s("yes")));
        assert!(!truthy(s(" true")));
        assert!(!truthy(Boolean(false)));
        assert!(!truthy(Integer(1)));
        assert!(!truthy(Null));
        assert!(!truthy(Object));
    }

    #[test]
    fn numbers_print_like_java() {
        assert_eq!(text(Integer(-404)), "-404");
        assert_eq!(text(Long(i64::MIN)), "-9223372036854775808");
        assert_eq!(text(Double(404.0)), "404.0");
        assert_eq!(text(Double(0.5)), "0.5");
        assert_eq!(text(Double(-20.1392)), "-20.1392");
        assert_eq!(text(Double(0.001)), "0.001");
        assert_eq!(text(Double(0.0001)), "1.0E-4");
        assert_eq!(text(Double(1234567.0)), "1234567.0");
        assert_eq!(text(Double(1e7)), "1.0E7");
        assert_eq!(text(Double(12345678.9)), "1.23456789E7");
        assert_eq!(text(Double(0.1 + 0.2)), "0.30000000000000004");
        assert_eq!(
            text(Double(-1.2345678901234567e-308)),
            "-1.2345678901234567E-308"
        );
        assert_eq!(text(Double(f64::MAX)), "1.7976931348623157E308");
        assert_eq!(text(Double(0.0)), "0.0");
        assert_eq!(text(Double(-0.0)), "-0.0");
        assert_eq!(text(Double(f64::NAN)), "NaN");
        assert_eq!(text(Double(f64::NEG_INFINITY)), "-Infinity");
        assert_eq!(text(Float(0.1)), "0.1");
        assert_eq!(text(Float(91.1)), "91.1");
        assert_eq!(text(Float(1e10)), "1.0E10");
        assert_eq!(text(Boolean(false)), "false");
        assert_eq!(text(Null), "");
    }

    fn scalar() -> impl proptest::strategy::Strategy<Value = Value<'static>> {
        use proptest::prelude::*;
        prop_oneof![
            any::<i32>().prop_map(Integer),
            any::<i64>().prop_map(Long),
            any::<f32>().prop_map(Float),
            any::<f64>().prop_map(Double),
            any::<bool>().prop_map(Boolean),
            (-3i32..3).prop_map(Integer),
            (-3i64..3).prop_map(Long),
            prop::sample::select(vec![-1.5f64, 0.0, -0.0, 0.5, 2.0, f64::NAN]).prop_map(Double),
            prop::sample::select(vec!["", "0", "1", "2.0", "a", "true", "é", "\u{1F600}"])
                .prop_map(Value::String),
        ]
    }

    proptest::proptest! {
        /// Between non-null values the six operators are one consistent order: `!=` is the
        /// negation of `=`, `>` mirrors `<`, `<=` is `<` or `=`.
        #[test]
        fn relations_are_consistent(a in scalar(), b in scalar()) {
            let eq = relate(Rel::Eq, a, b);
            proptest::prop_assert_eq!(relate(Rel::Ne, a, b), !eq);
            proptest::prop_assert_eq!(relate(Rel::Eq, b, a), eq);
            proptest::prop_assert_eq!(relate(Rel::Gt, a, b), relate(Rel::Lt, b, a));
            proptest::prop_assert_eq!(relate(Rel::Le, a, b), relate(Rel::Lt, a, b) || eq);
            proptest::prop_assert_eq!(relate(Rel::Ge, a, b), relate(Rel::Gt, a, b) || eq);
            let lt = usize::from(relate(Rel::Lt, a, b));
            let gt = usize::from(relate(Rel::Gt, a, b));
            proptest::prop_assert_eq!(lt + gt + usize::from(eq), 1);
        }

        /// Doubles print in Java's shape and read back as the same number.
        #[test]
        fn doubles_print_in_java_form_and_round_trip(d in proptest::prelude::any::<f64>()) {
            let t = text(Double(d));
            if d.is_finite() {
                let shape = regex::Regex::new(r"^-?[0-9]+\.[0-9]+(E-?[0-9]+)?$").unwrap();
                proptest::prop_assert!(shape.is_match(&t), "{}", t);
                proptest::prop_assert_eq!(t.parse::<f64>().unwrap().to_bits(), d.to_bits());
                let plain = !t.contains('E');
                let magnitude = d.abs();
                proptest::prop_assert_eq!(
                    plain,
                    magnitude == 0.0 || (1e-3..1e7).contains(&magnitude),
                    "{}", t
                );
            }
        }

        /// Floats likewise, as `f32`.
        #[test]
        fn floats_round_trip(f in proptest::prelude::any::<f32>()) {
            let t = text(Float(f));
            if f.is_finite() {
                proptest::prop_assert_eq!(t.parse::<f32>().unwrap().to_bits(), f.to_bits());
            }
        }
    }
}
