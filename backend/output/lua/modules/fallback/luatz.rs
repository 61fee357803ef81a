//! `luatz.timetable`: the part of luatz that Centreon's connectors call,
//! `new_from_timestamp(ts):rfc_3339()` (PagerDuty, Splunk).
//!
//! What luatz documents and does, and this follows:
//! - `new_from_timestamp(ts)` is UTC (luatz timetables have no zone) and, in
//!   luatz 0.4 and later, comes back normalised: the fields are in their
//!   usual ranges, with the fraction of `ts` left in `sec`. Times before 1970
//!   are counted backwards (`-1` is 1969-12-31 23:59:59).
//! - `:rfc_3339()` is `YYYY-MM-DDTHH:MM:SS.mmm`: always three fractional
//!   digits, the milliseconds *truncated* (luatz 0.3 stopped rounding, which
//!   could print a 60th second), and no `Z` or offset appended.
//! - The fields are `os.date("*t")`'s: `year month day hour min sec yday
//!   wday` (`wday` 1 = Sunday); `:unpack()` returns them in that order, with
//!   `hour` 12, `min` 0 and `sec` 0 when absent.
//!
//! Provided: `new`, `new_from_timestamp`, and the methods `rfc_3339`,
//! `timestamp`, `unpack`, `normalise`/`normalize`, `clone`, plus
//! `tostring`, `==`, `<`, `<=` and `-` on timetables. Differences: the date
//! arithmetic is not luatz's (Hinnant's days-from-civil, so no loop over
//! years for far dates), a year or month with a fraction is refused rather
//! than spread over the smaller fields, and the fields other than `sec` are
//! always integers (luatz's can come out as floats for a float `ts`; the
//! formatted string is the same).

use mlua::{Function, Lua};

pub(super) fn loader(lua: &Lua) -> mlua::Result<Function> {
    super::super::lua_part(lua, "luatz.timetable", SOURCE)
}

/// In Lua because a timetable is a plain table whose fields scripts read and
/// change, with methods behind its metatable.
const SOURCE: &str = r#"
local floor, format = math.floor, string.format

local DAYS_BEFORE_MONTH = { 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334 }

local function is_leap(y)
  return y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)
end

-- Howard Hinnant's civil-calendar algorithms: years start on March 1st so
-- that the leap day is the last day of a year, and 400-year eras repeat.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = z // 146097
  local doe = z - era * 146097
  local yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
  local doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
  local mp = (5 * doy + 2) // 153
  local d = doy - (153 * mp + 2) // 5 + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function check_timestamp(ts, fname)
  if type(ts) ~= "number" then
    error(format("bad argument #1 to '%s' (number expected, got %s)", fname, type(ts)), 3)
  end
  if ts ~= ts or ts == math.huge or ts == -math.huge then
    error(format("bad argument #1 to '%s' (finite number expected, got %s)", fname, tostring(ts)), 3)
  end
end

-- Sets t's fields to the UTC date and time of ts.
local function fill(t, ts)
  local whole = floor(ts)
  local fraction = ts - whole
  local days, secs = whole // 86400, whole % 86400
  local y, m, d = civil_from_days(days)
  t.year, t.month, t.day = y, m, d
  t.hour, t.min = secs // 3600, secs % 3600 // 60
  -- A float ts keeps its fraction (and float type) in sec, as luatz's does.
  t.sec = secs % 60 + fraction
  t.yday = DAYS_BEFORE_MONTH[m] + d + ((m > 2 and is_leap(y)) and 1 or 0)
  -- 1970-01-01 was a Thursday, wday 5.
  t.wday = (days + 4) % 7 + 1
  return t
end

local methods = {}
local mt = { __index = methods }

local function new(year, month, day, hour, min, sec, yday, wday)
  return setmetatable({
    year = year, month = month, day = day, hour = hour, min = min, sec = sec,
    yday = yday, wday = wday,
  }, mt)
end

function methods:unpack()
  return assert(self.year, "year required"),
    assert(self.month, "month required"),
    assert(self.day, "day required"),
    self.hour or 12, self.min or 0, self.sec or 0, self.yday, self.wday
end

function methods:timestamp()
  local year, month, day, hour, min, sec = self:unpack()
  if year % 1 ~= 0 or month % 1 ~= 0 then
    error("luatz.timetable (brokerstream): a year or month with a fraction is not supported", 2)
  end
  -- month may have left 1-12 through arithmetic on the fields; day, hour,
  -- min and sec count linearly and need no carrying.
  local m0 = month - 1
  year, month = year + m0 // 12, m0 % 12 + 1
  return (days_from_civil(year, month, 1) + day - 1) * 86400 + hour * 3600 + min * 60 + sec
end

function methods:normalise()
  return fill(self, self:timestamp())
end
methods.normalize = methods.normalise

function methods:clone()
  return new(self:unpack())
end

function methods:rfc_3339()
  local year, month, day, hour, min, sec = self:unpack()
  local whole = floor(sec)
  local millis = floor((sec - whole) * 1000)
  return format("%04d-%02d-%02dT%02d:%02d:%02d.%03d", year, month, day, hour, min, whole, millis)
end

local function seconds(x)
  if getmetatable(x) == mt then return x:timestamp() end
  return x
end

mt.__tostring = methods.rfc_3339
mt.__eq = function(a, b) return a:timestamp() == b:timestamp() end
mt.__lt = function(a, b) return a:timestamp() < b:timestamp() end
mt.__le = function(a, b) return a:timestamp() <= b:timestamp() end
mt.__sub = function(a, b) return seconds(a) - seconds(b) end

local function new_from_timestamp(ts)
  check_timestamp(ts, "new_from_timestamp")
  return fill(setmetatable({}, mt), ts)
end

return {
  new = new,
  new_from_timestamp = new_from_timestamp,
}
"#;

#[cfg(test)]
mod tests {
    use super::super::super::testsupport::lua;

    fn rfc(lua: &mlua::Lua, ts: &str) -> String {
        lua.load(format!(
            r#"return require("luatz.timetable").new_from_timestamp({ts}):rfc_3339()"#
        ))
        .eval()
        .unwrap_or_else(|e| panic!("{ts}: {e}"))
    }

    /// The expected strings are luatz's format (three truncated fractional
    /// digits, no zone) on dates checked with `date -u -d @TS`.
    #[test]
    fn rfc_3339_of_known_timestamps() {
        let lua = lua();
        for (ts, expected) in [
            ("0", "1970-01-01T00:00:00.000"),
            ("1634025600", "2021-10-12T08:00:00.000"),
            ("1634025600.5", "2021-10-12T08:00:00.500"),
            ("1634025600.9999", "2021-10-12T08:00:00.999"),
            ("0.0005", "1970-01-01T00:00:00.000"),
            ("951782400", "2000-02-29T00:00:00.000"),
            ("4107542399", "2100-02-28T23:59:59.000"),
            ("4107542400", "2100-03-01T00:00:00.000"),
            ("-1", "1969-12-31T23:59:59.000"),
            ("-0.25", "1969-12-31T23:59:59.750"),
            ("-86400", "1969-12-31T00:00:00.000"),
            ("-2208988800", "1900-01-01T00:00:00.000"),
            ("253402300799", "9999-12-31T23:59:59.000"),
        ] {
            assert_eq!(rfc(&lua, ts), expected, "{ts}");
        }
    }

    #[test]
    fn fields_methods_and_round_trips() {
        let lua = lua();
        lua.load(
            r#"
            local tt = require "luatz.timetable"
            local t = tt.new_from_timestamp(1634025600)
            assert(t.year == 2021 and t.month == 10 and t.day == 12, tostring(t))
            assert(t.hour == 8 and t.min == 0 and t.sec == 0)
            assert(math.type(t.sec) == "integer")
            -- 2021-10-12 was a Tuesday (wday 3), day 285 of the year.
            assert(t.wday == 3 and t.yday == 285, t.wday .. " " .. t.yday)
            assert(t:timestamp() == 1634025600)
            assert(tostring(t) == "2021-10-12T08:00:00.000")
            local y, mo, d, h, mi, s, yd, wd = t:unpack()
            assert(y == 2021 and mo == 10 and d == 12 and h == 8 and mi == 0 and s == 0)
            assert(yd == 285 and wd == 3)

            local f = tt.new_from_timestamp(1634025600.5)
            assert(math.type(f.sec) == "float" and f.sec == 0.5)
            assert(f:timestamp() == 1634025600.5)
            assert(tt.new_from_timestamp(-1):timestamp() == -1)

            -- arithmetic on the fields, then normalise
            local later = t:clone()
            later.month = later.month + 3
            later.min = later.min - 1
            later:normalise()
            assert(tostring(later) == "2022-01-12T07:59:00.000", tostring(later))
            assert(tostring(t) == "2021-10-12T08:00:00.000")
            assert(later > t and t < later and t <= t:clone() and t == t:clone())
            assert(later - t == later:timestamp() - 1634025600)

            local n = tt.new(2021, 13, 1, 0, 0, 0)
            assert(tostring(n) == "2021-13-01T00:00:00.000")
            assert(tostring(n:normalize()) == "2022-01-01T00:00:00.000")
            assert(tostring(tt.new(2000, 1, 1)) == "2000-01-01T12:00:00.000")
            "#,
        )
        .exec()
        .expect("lua");
    }

    #[test]
    fn bad_timestamps_are_argument_errors() {
        let lua = lua();
        lua.load(
            r#"
            local tt = require "luatz.timetable"
            local ok, e = pcall(tt.new_from_timestamp, "1634025600")
            assert(not ok and e:find("bad argument #1 to 'new_from_timestamp' %(number expected, got string%)"), e)
            ok, e = pcall(tt.new_from_timestamp, 0/0)
            assert(not ok and e:find("finite number expected"), e)
            ok, e = pcall(tt.new_from_timestamp, math.huge)
            assert(not ok and e:find("finite number expected"), e)
            ok, e = pcall(function() return tt.new(2021.5, 1, 1):timestamp() end)
            assert(not ok and e:find("fraction is not supported"), e)
            "#,
        )
        .exec()
        .expect("lua");
    }
}
