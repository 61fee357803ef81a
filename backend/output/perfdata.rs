//! Nagios performance data as Centreon parses it (docs/lua-runtime.md
//! §5.3): what `broker.parse_perfdata` returns to a script and what the
//! native `influxdb` output writes. Numbers are exact decimals or, for
//! byte-identity with current Centreon, 32-bit floats widened to doubles
//! ([`Precision`]).

/// One metric of a perfdata string.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub label: String,
    pub value: f64,
    pub uom: String,
    pub warning_low: f64,
    pub warning_high: f64,
    pub warning_mode: bool,
    pub critical_low: f64,
    pub critical_high: f64,
    pub critical_mode: bool,
    pub min: f64,
    pub max: f64,
}

const MAX_LABEL: usize = 1021;
const MAX_UNIT: usize = 32;

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Cuts at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// How perfdata numbers are read. Centreon's parser reads them with
/// `strtof` since 2024 (docs/lua-runtime.md §5.3): `0.03` becomes
/// `0.029999999329448`, which lands in InfluxDB as such. Before, and in
/// 21.10, doubles: what a user reading the values expects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// The decimal value as written (a double), as Centreon 21.10.
    #[default]
    Exact,
    /// A 32-bit float widened to a double, as current Centreon.
    Float32,
}

impl Precision {
    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "exact" => Some(Precision::Exact),
            "float32" => Some(Precision::Float32),
            _ => None,
        }
    }

    /// A double read with `strtod` and stored as Centreon stores it.
    fn store(self, v: f64) -> f64 {
        match self {
            Precision::Exact => v,
            Precision::Float32 => f64::from(v as f32),
        }
    }
}

/// `strtof`/`strtod`: the longest numeric prefix, rounded to `precision`;
/// None if there is no number at all. Returns the value and the bytes
/// consumed.
fn strtof(s: &[u8], precision: Precision) -> Option<(f64, usize)> {
    let mut end = 0;
    let mut best = None;
    // Try every prefix length that could be a number and keep the longest
    // that parses (inputs are short).
    while end < s.len() && (s[end].is_ascii_alphanumeric() || matches!(s[end], b'.' | b'+' | b'-'))
    {
        end += 1;
        let text = std::str::from_utf8(&s[..end]).unwrap_or("");
        let lower = text.to_ascii_lowercase();
        // Rust accepts "inf"/"nan" words as strtof does, but not "e" alone.
        // Float32 parses as f32 itself: rounding a parsed double to f32
        // could differ from strtof in the last bit.
        let parsed = match precision {
            Precision::Exact => lower.parse::<f64>().ok(),
            Precision::Float32 => lower.parse::<f32>().ok().map(f64::from),
        };
        if let Some(v) = parsed {
            best = Some((v, end));
        }
    }
    best
}

fn parse_value(rest: &[u8], precision: Precision) -> Option<(f64, usize)> {
    // A comma anywhere in the rest switches to Centreon's decimal-comma
    // handling: the text up to the comma and the characters after it up to
    // a separator, with the comma made a dot, read with strtod.
    if let Some(comma) = rest.iter().position(|&b| b == b',') {
        let mut end = comma + 1;
        while end < rest.len() && !matches!(rest[end], b' ' | b'\t' | b'\n' | b'\r' | b';') {
            end += 1;
        }
        let text: Vec<u8> = rest[..end]
            .iter()
            .map(|&b| if b == b',' { b'.' } else { b })
            .collect();
        let mut consumed = 0;
        let mut best = None;
        while consumed < text.len() {
            consumed += 1;
            if let Ok(v) = std::str::from_utf8(&text[..consumed])
                .unwrap_or("")
                .parse::<f64>()
            {
                best = Some((v, consumed));
            }
        }
        if let Some((v, n)) = best {
            return Some((precision.store(v), n));
        }
        return None;
    }
    strtof(rest, precision)
}

/// A range `[@][low:]high`: (low, high, mode).
fn parse_range(text: &str, precision: Precision) -> (f64, f64, bool) {
    let (mode, text) = match text.strip_prefix('@') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let number = |s: &str| -> f64 {
        strtof(s.trim().as_bytes(), precision)
            .map(|(v, _)| v)
            .unwrap_or(f64::NAN)
    };
    match text.split_once(':') {
        None => {
            let high = number(text);
            let low = if high.is_nan() { f64::NAN } else { 0.0 };
            (low, high, mode)
        }
        Some((low, high)) => {
            let low = if low.trim() == "~" {
                f64::NEG_INFINITY
            } else {
                number(low)
            };
            let high = if high.trim().is_empty() {
                f64::INFINITY
            } else {
                number(high)
            };
            (low, high, mode)
        }
    }
}

/// Every valid metric, in order; invalid ones are skipped, duplicates keep
/// the first.
pub fn parse(text: &str, precision: Precision) -> Vec<Metric> {
    let bytes = text.as_bytes();
    let mut metrics: Vec<Metric> = Vec::new();
    let mut i = 0;
    let skip_to_space = |mut i: usize| {
        while i < bytes.len() && !is_space(bytes[i]) {
            i += 1;
        }
        i
    };
    loop {
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        // Label: up to '=' or a space, except inside single quotes.
        let start = i;
        let mut quoted = false;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'\'' {
                quoted = !quoted;
            } else if !quoted && (b == b'=' || is_space(b)) {
                break;
            }
            i += 1;
        }
        let raw = &text[start..i];
        if i >= bytes.len() || bytes[i] != b'=' {
            i = skip_to_space(i);
            continue;
        }
        i += 1;
        let mut label = raw.strip_prefix('\'').unwrap_or(raw);
        label = label.strip_suffix('\'').unwrap_or(label);
        let mut label = label.trim().to_owned();
        if label.ends_with(']') && label.len() >= 3 {
            let prefix = &label[..2];
            if matches!(prefix, "a[" | "c[" | "d[" | "g[") {
                label = label[2..label.len() - 1].to_owned();
            }
        }
        let Some((value, used)) = parse_value(&bytes[i..], precision) else {
            i = skip_to_space(i);
            continue;
        };
        i += used;
        let unit_start = i;
        while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r' | b';') {
            i += 1;
        }
        let uom = cut(&text[unit_start..i], MAX_UNIT);
        let mut parts: Vec<&str> = Vec::new();
        if i < bytes.len() && bytes[i] == b';' {
            let end = skip_to_space(i);
            parts = text[i + 1..end].split(';').collect();
            i = end;
        }
        let field = |n: usize| parts.get(n).copied().unwrap_or("");
        let (warning_low, warning_high, warning_mode) = if field(0).is_empty() {
            (f64::NAN, f64::NAN, false)
        } else {
            parse_range(field(0), precision)
        };
        let (critical_low, critical_high, critical_mode) = if field(1).is_empty() {
            (f64::NAN, f64::NAN, false)
        } else {
            parse_range(field(1), precision)
        };
        let number = |s: &str| {
            strtof(s.trim().as_bytes(), precision)
                .map(|(v, _)| v)
                .unwrap_or(f64::NAN)
        };
        let label = cut(&label, MAX_LABEL);
        if label.is_empty() || metrics.iter().any(|m| m.label == label) {
            continue;
        }
        metrics.push(Metric {
            label,
            value,
            uom,
            warning_low,
            warning_high,
            warning_mode,
            critical_low,
            critical_high,
            critical_mode,
            min: number(field(2)),
            max: number(field(3)),
        });
    }
    metrics
}

/// The extended names of a label (docs/lua-runtime.md §5.3, "full" mode).
pub struct Names {
    pub metric_name: String,
    pub instance: String,
    pub subinstance: Vec<String>,
    pub metric_fields: Vec<String>,
    pub metric_unit: String,
}

pub fn names(label: &str) -> Names {
    let sharp = label.find('#');
    let tilde = label.find('~');
    let metric_name = match sharp {
        None => label.to_owned(),
        Some(s) => label[s + 1..].to_owned(),
    };
    let instance = match (sharp, tilde) {
        (None, _) | (Some(0), _) => String::new(),
        (Some(s), None) => label[..s].to_owned(),
        (Some(_), Some(t)) => label[..t].to_owned(),
    };
    let subinstance = match sharp {
        None => Vec::new(),
        Some(s) => label[..s].split('~').skip(1).map(str::to_owned).collect(),
    };
    let metric_fields = metric_name.split('.').map(str::to_owned).collect();
    let metric_unit = match label.rfind('.') {
        Some(d) => label[d + 1..].to_owned(),
        None => label.to_owned(),
    };
    Names {
        metric_name,
        instance,
        subinstance,
        metric_fields,
        metric_unit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::lua::json::lua_number;

    fn f32s(text: &str) -> Vec<Metric> {
        parse(text, Precision::Float32)
    }

    fn values(text: &str) -> Vec<(String, String)> {
        values_in(text, Precision::Float32)
    }

    fn values_in(text: &str, precision: Precision) -> Vec<(String, String)> {
        parse(text, precision)
            .into_iter()
            .map(|m| (m.label, lua_number(m.value)))
            .collect()
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_owned(), b.to_owned())
    }

    #[test]
    fn exact_values_are_the_decimals_written() {
        assert_eq!(
            values_in(" rta=0.80 pl=0.03;0.1;0.2;0;1.5 x=1,5", Precision::Exact),
            [pair("rta", "0.8"), pair("pl", "0.03"), pair("x", "1.5")]
        );
        let m = &parse("pl=0.03;0.1;0.2;0;1.5", Precision::Exact)[0];
        assert_eq!((m.warning_high, m.critical_high, m.max), (0.1, 0.2, 1.5));
        assert_eq!(Precision::default(), Precision::Exact);
        assert_eq!(Precision::parse("float32"), Some(Precision::Float32));
        assert_eq!(Precision::parse("exact"), Some(Precision::Exact));
        assert_eq!(Precision::parse("f32"), None);
    }

    #[test]
    fn values_are_32_bit_floats() {
        assert_eq!(
            values(" percent_packet_loss=0 rta=0.80"),
            [
                pair("percent_packet_loss", "0.0"),
                pair("rta", "0.80000001192093")
            ]
        );
    }

    #[test]
    fn ranges_units_and_modes() {
        let m = f32s("'one value'=12%;25:80;81:95 'another value'=78%;60;90;;");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].label, "one value");
        assert_eq!(m[0].uom, "%");
        assert_eq!(
            (
                m[0].warning_low,
                m[0].warning_high,
                m[0].critical_low,
                m[0].critical_high
            ),
            (25.0, 80.0, 81.0, 95.0)
        );
        assert!(m[0].min.is_nan() && m[0].max.is_nan());
        assert_eq!((m[1].warning_low, m[1].warning_high), (0.0, 60.0));
        assert_eq!((m[1].critical_low, m[1].critical_high), (0.0, 90.0));
        let a = &f32s("a=1;@10:20;~:5;;")[0];
        assert!(a.warning_mode && !a.critical_mode);
        assert_eq!((a.warning_low, a.warning_high), (10.0, 20.0));
        assert_eq!((a.critical_low, a.critical_high), (f64::NEG_INFINITY, 5.0));
    }

    #[test]
    fn odd_inputs() {
        assert_eq!(values("x=1,5;2 y=3"), [pair("x", "1.5"), pair("y", "3.0")]);
        assert_eq!(
            values("dup=1 dup=2 'a b'=3"),
            [pair("dup", "1.0"), pair("a b", "3.0")]
        );
        let c = &f32s("c[cnt]=4c")[0];
        assert_eq!((c.label.as_str(), c.uom.as_str()), ("cnt", "c"));
        assert!(f32s("noeq 5").is_empty());
        assert!(f32s("").is_empty());
        assert!(f32s("a=abc b=2").len() == 1);
    }

    #[test]
    fn extended_names() {
        let n = names("PingSDWan~vdom~ifName#azure.insights.logicaldisk.free.percentage");
        assert_eq!(n.instance, "PingSDWan");
        assert_eq!(n.subinstance, ["vdom", "ifName"]);
        assert_eq!(n.metric_name, "azure.insights.logicaldisk.free.percentage");
        assert_eq!(n.metric_fields.len(), 5);
        assert_eq!(n.metric_unit, "percentage");
        let n = names("#metric~titus");
        assert_eq!(
            (
                n.instance.as_str(),
                n.metric_name.as_str(),
                n.metric_unit.as_str()
            ),
            ("", "metric~titus", "#metric~titus")
        );
        assert_eq!(names("tt#a.b").instance, "tt");
        let n = names("toto~a.b.totu");
        assert_eq!(
            (n.metric_name.as_str(), n.instance.as_str()),
            ("toto~a.b.totu", "")
        );
        let n = names("PingSDWan~vdom~ifName#azure.insights#logicaldisk~free.percentage");
        assert_eq!(n.metric_name, "azure.insights#logicaldisk~free.percentage");
        assert_eq!(n.instance, "PingSDWan");
        assert_eq!(
            n.metric_fields,
            ["azure", "insights#logicaldisk~free", "percentage"]
        );
    }
}
