//! ABIS, the legacy system of the demo: a steel-coil processor's 8 tables, as the document the
//! project was specified from describes them (its record counts at scale 1: 98,438 rows), with
//! the dirt real legacy data has: CHAR padding, Y/N flags, 'DD-MON-YY' dates kept as text,
//! phones in five spellings, e-mails with blanks and capitals, empty strings, a few values no
//! mapping can save. Deterministic: a scale gives the same rows every time, and the same rows
//! are written to SQLite (the demo) and as Oracle SQL (the smoke test), each in its own types.

use chrono::{Duration, NaiveDate, NaiveDateTime};

/// One column of a legacy table: its name, its type in the SQLite demo, its type in Oracle.
pub struct Col {
    pub name: &'static str,
    pub sqlite: &'static str,
    pub oracle: &'static str,
}

pub struct Table {
    pub name: &'static str,
    /// The entity that loads it, and its rows at scale 1 (the document's counts).
    pub entity: &'static str,
    pub rows: u64,
    pub cols: &'static [Col],
}

macro_rules! cols {
    ($(($n:expr, $s:expr, $o:expr)),* $(,)?) => { &[$(Col { name: $n, sqlite: $s, oracle: $o }),*] };
}

/// The 8 tables in load order; the first column is the primary key.
pub const TABLES: [Table; 8] = [
    Table {
        name: "AB_CARRIER",
        entity: "carrier",
        rows: 25,
        cols: cols![
            ("CARRIER_ID", "INTEGER", "NUMBER(10)"),
            ("CARRIER_CODE", "CHAR(10)", "CHAR(10)"),
            ("CARRIER_NAME", "VARCHAR2(100)", "VARCHAR2(100)"),
            ("SCAC_CODE", "CHAR(4)", "CHAR(4)"),
            ("PHONE", "VARCHAR2(30)", "VARCHAR2(30)"),
            ("ACTIVE_FLAG", "CHAR(1)", "CHAR(1)"),
            ("CREATED_DT", "VARCHAR2(9)", "DATE"),
            ("LAST_MODIFIED", "TIMESTAMP", "TIMESTAMP(6)"),
        ],
    },
    Table {
        name: "AB_LINE",
        entity: "line",
        rows: 10,
        cols: cols![
            ("LINE_ID", "INTEGER", "NUMBER(10)"),
            ("LINE_CODE", "CHAR(10)", "CHAR(10)"),
            ("DESCRIPTION", "VARCHAR2(200)", "VARCHAR2(200)"),
            ("MAX_WIDTH", "VARCHAR2(20)", "NUMBER(8,2)"),
            ("LAST_MODIFIED", "TIMESTAMP", "TIMESTAMP(6)"),
        ],
    },
    Table {
        name: "AB_CUSTOMER",
        entity: "customer",
        rows: 1234,
        cols: cols![
            ("CUSTOMER_ID", "INTEGER", "NUMBER(10)"),
            ("CUST_CODE", "CHAR(12)", "CHAR(12)"),
            ("CUST_NAME", "VARCHAR2(120)", "VARCHAR2(120)"),
            ("CONTACT_NAME", "VARCHAR2(80)", "VARCHAR2(80)"),
            ("EMAIL", "VARCHAR2(254)", "VARCHAR2(254)"),
            ("PHONE", "VARCHAR2(30)", "VARCHAR2(30)"),
            ("ADDR1", "VARCHAR2(120)", "VARCHAR2(120)"),
            ("CITY", "VARCHAR2(60)", "VARCHAR2(60)"),
            ("STATE_CD", "CHAR(2)", "CHAR(2)"),
            ("ZIP", "VARCHAR2(10)", "VARCHAR2(10)"),
            ("COUNTRY_CD", "CHAR(2)", "CHAR(2)"),
            ("CREDIT_LIMIT", "VARCHAR2(20)", "NUMBER(14,2)"),
            ("ACTIVE_FLAG", "CHAR(1)", "CHAR(1)"),
            ("CREATED", "VARCHAR2(9)", "DATE"),
            ("STATUS", "CHAR(1)", "CHAR(1)"),
            ("LAST_MODIFIED", "TIMESTAMP", "TIMESTAMP(6)"),
        ],
    },
    Table {
        name: "AB_COIL",
        entity: "coil",
        rows: 45_678,
        cols: cols![
            ("COIL_ID", "INTEGER", "NUMBER(10)"),
            ("COIL_NO", "CHAR(20)", "CHAR(20)"),
            ("CUSTOMER_ID", "INTEGER", "NUMBER(10)"),
            ("HEAT_NO", "VARCHAR2(12)", "VARCHAR2(12)"),
            ("GRADE", "VARCHAR2(20)", "VARCHAR2(20)"),
            ("GAUGE_MM", "VARCHAR2(10)", "NUMBER(8,5)"),
            ("WIDTH_MM", "REAL", "BINARY_DOUBLE"),
            ("WEIGHT_KG", "VARCHAR2(20)", "NUMBER(12,3)"),
            ("LENGTH_M", "VARCHAR2(20)", "NUMBER(10,1)"),
            ("LOCATION", "VARCHAR2(20)", "VARCHAR2(20)"),
            ("STATUS_CD", "CHAR(1)", "CHAR(1)"),
            ("RECV_DATE", "VARCHAR2(9)", "DATE"),
            ("MILL", "VARCHAR2(40)", "VARCHAR2(40)"),
            ("FINISH", "VARCHAR2(20)", "VARCHAR2(20)"),
            ("COATING", "VARCHAR2(20)", "VARCHAR2(20)"),
            ("HOLD_FLAG", "CHAR(1)", "CHAR(1)"),
            ("REMARKS", "CLOB", "CLOB"),
            ("CREATED_TS", "VARCHAR2(19)", "DATE"),
            ("LAST_MODIFIED", "TIMESTAMP", "TIMESTAMP(6)"),
        ],
    },
    Table {
        name: "AB_JOB",
        entity: "job",
        rows: 23_456,
        cols: cols![
            ("JOB_ID", "INTEGER", "NUMBER(10)"),
            ("JOB_NO", "CHAR(20)", "CHAR(20)"),
            ("CUSTOMER_ID", "INTEGER", "NUMBER(10)"),
            ("COIL_ID", "INTEGER", "NUMBER(10)"),
            ("LINE_CD", "CHAR(10)", "CHAR(10)"),
            ("JOB_TYPE", "VARCHAR2(10)", "VARCHAR2(10)"),
            ("STATUS_CD", "CHAR(1)", "CHAR(1)"),
            ("PRIORITY", "INTEGER", "NUMBER(1)"),
            ("SCHED_START", "VARCHAR2(19)", "DATE"),
            ("SCHED_END", "VARCHAR2(19)", "DATE"),
            ("ACT_START", "VARCHAR2(19)", "DATE"),
            ("ACT_END", "VARCHAR2(19)", "DATE"),
            ("TGT_GAUGE", "VARCHAR2(10)", "NUMBER(8,5)"),
            ("TGT_WIDTH", "VARCHAR2(10)", "NUMBER(8,2)"),
            ("PCS_ORDERED", "INTEGER", "NUMBER(6)"),
            ("OPERATOR", "VARCHAR2(30)", "VARCHAR2(30)"),
            ("REMARKS", "CLOB", "CLOB"),
            ("RUSH_FLAG", "CHAR(1)", "CHAR(1)"),
            ("CREATED_TS", "VARCHAR2(19)", "DATE"),
            ("LAST_MODIFIED", "TIMESTAMP", "TIMESTAMP(6)"),
        ],
    },
    Table {
        name: "AB_SKID",
        entity: "skid",
        rows: 8901,
        cols: cols![
            ("SKID_ID", "INTEGER", "NUMBER(10)"),
            ("SKID_NO", "CHAR(20)", "CHAR(20)"),
            ("JOB_ID", "INTEGER", "NUMBER(10)"),
            ("PIECES", "INTEGER", "NUMBER(6)"),
            ("NET_WT", "VARCHAR2(20)", "NUMBER(12,1)"),
            ("GROSS_WT", "VARCHAR2(20)", "NUMBER(12,1)"),
            ("LOCATION", "VARCHAR2(20)", "VARCHAR2(20)"),
            ("STATUS_CD", "CHAR(1)", "CHAR(1)"),
            ("CREATED_TS", "VARCHAR2(20)", "DATE"),
            ("LAST_MODIFIED", "TIMESTAMP", "TIMESTAMP(6)"),
        ],
    },
    Table {
        name: "AB_QA_RESULT",
        entity: "qa",
        rows: 12_345,
        cols: cols![
            ("QA_ID", "INTEGER", "NUMBER(10)"),
            ("JOB_ID", "INTEGER", "NUMBER(10)"),
            ("TEST_CODE", "VARCHAR2(20)", "VARCHAR2(20)"),
            ("RESULT_VAL", "VARCHAR2(20)", "NUMBER(12,4)"),
            ("UOM", "VARCHAR2(8)", "VARCHAR2(8)"),
            ("MIN_SPEC", "VARCHAR2(20)", "NUMBER(12,4)"),
            ("MAX_SPEC", "VARCHAR2(20)", "NUMBER(12,4)"),
            ("PASS_FAIL", "CHAR(1)", "CHAR(1)"),
            ("TESTED_BY", "VARCHAR2(30)", "VARCHAR2(30)"),
            ("TESTED_ON", "VARCHAR2(15)", "DATE"),
            ("LAST_MODIFIED", "TIMESTAMP", "TIMESTAMP(6)"),
        ],
    },
    Table {
        name: "AB_SHIPMENT",
        entity: "shipment",
        rows: 6789,
        cols: cols![
            ("SHIPMENT_ID", "INTEGER", "NUMBER(10)"),
            ("BOL_NO", "CHAR(20)", "CHAR(20)"),
            ("CUSTOMER_ID", "INTEGER", "NUMBER(10)"),
            ("CARRIER_ID", "INTEGER", "NUMBER(10)"),
            ("SHIP_DATE", "VARCHAR2(9)", "DATE"),
            ("DELIVERED_DT", "VARCHAR2(9)", "DATE"),
            ("STATUS_CD", "CHAR(1)", "CHAR(1)"),
            ("GROSS_WT", "VARCHAR2(20)", "NUMBER(12,1)"),
            ("NET_WT", "VARCHAR2(20)", "NUMBER(12,1)"),
            ("PIECES", "INTEGER", "NUMBER(6)"),
            ("DEST_CITY", "VARCHAR2(60)", "VARCHAR2(60)"),
            ("LAST_MODIFIED", "TIMESTAMP", "TIMESTAMP(6)"),
        ],
    },
];

/// How a date or time is spelled where the legacy system kept it as text (SQLite); in Oracle
/// it is a DATE or TIMESTAMP.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeText {
    /// `DD-MON-YY`
    DdMonYy,
    /// `YYYY-MM-DD HH24:MI:SS`
    Iso,
    /// `YYYY-MM-DD HH24:MI:SS.FF6`: the change column.
    IsoMicros,
    /// `MM/DD/YYYY HH12:MI AM`
    Us12,
    /// `DD-MON-YY HH24:MI`
    DdMonYyHm,
}

/// One cell, before it is written in a dialect.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    /// Text in both (CHAR, VARCHAR2, CLOB); `""` is NULL in Oracle, as Oracle has it.
    Text(String),
    /// A number: text in SQLite (as written, blanks and all), NUMBER in Oracle.
    Num(String),
    Time(NaiveDateTime, TimeText),
}

impl Cell {
    /// The cell as SQLite's legacy text.
    pub fn time_text(t: &NaiveDateTime, f: TimeText) -> String {
        const MON: [&str; 12] = [
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ];
        use chrono::{Datelike, Timelike};
        let mon = MON[t.month0() as usize];
        match f {
            TimeText::DdMonYy => format!("{:02}-{mon}-{:02}", t.day(), t.year() % 100),
            TimeText::DdMonYyHm => format!(
                "{:02}-{mon}-{:02} {:02}:{:02}",
                t.day(),
                t.year() % 100,
                t.hour(),
                t.minute()
            ),
            TimeText::Iso => t.format("%Y-%m-%d %H:%M:%S").to_string(),
            TimeText::IsoMicros => t.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            TimeText::Us12 => t.format("%m/%d/%Y %I:%M %p").to_string(),
        }
    }
}

/// xorshift64*: small, deterministic, good enough for fake data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Rows per table at `scale` (the document's counts at 1).
pub fn counts(scale: f64) -> [u64; 8] {
    TABLES.map(|t| ((t.rows as f64 * scale).round() as u64).max(1))
}

fn day(r: &mut Rng, from_year: u64, years: u64) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(
        (from_year + r.below(years)) as i32,
        1 + r.below(12) as u32,
        1 + r.below(28) as u32,
    )
    .expect("a valid day")
    .and_hms_opt(0, 0, 0)
    .expect("midnight")
}

fn moment(r: &mut Rng, from_year: u64, years: u64) -> NaiveDateTime {
    day(r, from_year, years) + Duration::seconds(r.below(86_400) as i64)
}

fn phone(r: &mut Rng) -> Cell {
    let (a, b, c) = (200 + r.below(800), 200 + r.below(800), r.below(10000));
    Cell::Text(match r.below(6) {
        0 => format!("({a}) {b}-{c:04}"),
        1 => format!("{a}.{b}.{c:04}"),
        2 => format!("{a}-{b}-{c:04}"),
        3 => format!("{a}{b}{c:04}"),
        4 => format!("+1 {a} {b} {c:04}"),
        _ => String::new(),
    })
}

/// Money as a legacy system typed it: trailing zeros, blanks, one decimal.
fn money(r: &mut Rng, max: u64) -> Cell {
    let v = r.below(max * 100);
    Cell::Num(match r.below(4) {
        0 => format!("{}.{:02}", v / 100, v % 100),
        1 => format!("  {} ", v / 100),
        2 => format!("{}.{}", v / 100, (v % 100) / 10),
        _ => format!("{}.{:02}0", v / 100, v % 100),
    })
}

fn flag(r: &mut Rng) -> Cell {
    Cell::Text(
        match r.below(20) {
            0 => "",
            1..=13 => "Y",
            _ => "N",
        }
        .into(),
    )
}

fn text(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}

fn num(s: impl Into<String>) -> Cell {
    Cell::Num(s.into())
}

/// The change column: a moment of the last few years, later for higher keys (a legacy
/// system's LAST_MODIFIED is set by every writer).
fn last_modified(r: &mut Rng, i: u64, n: u64) -> Cell {
    let base = NaiveDate::from_ymd_opt(2022, 1, 1)
        .expect("valid")
        .and_hms_opt(0, 0, 0)
        .expect("valid");
    let span = 3 * 365 * 86_400u64;
    let at = base + Duration::seconds((span * i / n.max(1)) as i64) + Duration::microseconds(r.below(1_000_000) as i64);
    Cell::Time(at, TimeText::IsoMicros)
}

/// Every row of every table at `scale`, in load order, handed to `emit(table index, row)`.
pub fn generate(scale: f64, emit: &mut dyn FnMut(usize, Vec<Cell>)) {
    let [carriers, lines, customers, coils, jobs, skids, qas, shipments] = counts(scale);
    let mut r = Rng(0x9E3779B97F4A7C15);
    const CARRIERS: [&str; 12] = [
        "UPS Freight",
        "Old Dominion",
        "Estes Express",
        "XPO Logistics",
        "Saia",
        "ABF Freight",
        "R+L Carriers",
        "YRC",
        "Central Transport",
        "Averitt",
        "Southeastern",
        "Pitt Ohio",
    ];
    for i in 1..=carriers {
        let scac: String = (0..4).map(|_| (b'A' + r.below(26) as u8) as char).collect();
        emit(
            0,
            vec![
                Cell::Int(i as i64),
                text(format!("CR{i:03}")),
                text(format!("{}  ", CARRIERS[(i as usize - 1) % CARRIERS.len()])),
                match i % 7 {
                    0 => text(""),
                    3 => text(scac.to_lowercase()),
                    _ => text(scac),
                },
                phone(&mut r),
                text(if i % 5 == 0 { "N" } else { "Y" }),
                Cell::Time(day(&mut r, 1995, 25), TimeText::DdMonYy),
                last_modified(&mut r, i, carriers),
            ],
        );
    }
    const LINES: [&str; 6] = [
        "Slitter ",
        "Cut-to-length",
        "  Pickle line",
        "Temper mill",
        "Blanking press",
        "",
    ];
    for i in 1..=lines {
        emit(
            1,
            vec![
                Cell::Int(i as i64),
                text(format!("L{i}")),
                text(LINES[(i as usize - 1) % LINES.len()]),
                num(r.pick(&["1524.00", "1828.8", "1250", "  2032.00"])),
                last_modified(&mut r, i, lines),
            ],
        );
    }
    let first = ["john", "MARY", "Wei", "o'brien", "José", "ANNA", "li", "Raj"];
    let last = [
        "Smith", "STEEL", "nguyen", "Müller", "Kowalski", "Ferreira", "Okafor", "Tanaka",
    ];
    let companies = [
        "Acme Steel",
        "great lakes fabricating",
        "NORTHERN METAL WORKS",
        "Dakota Stamping",
        "Pioneer Auto Parts",
        "  Summit Tube  ",
        "Bluewater Appliance",
        "Keystone HVAC",
    ];
    let cities = [
        ("Gary", "IN"),
        ("Toledo", "oh"),
        ("Hamilton", "ON"),
        ("Pittsburgh", "PA"),
        ("Detroit ", "MI"),
    ];
    for i in 1..=customers {
        let (f, l) = (r.pick(&first), r.pick(&last));
        let email = if i % 211 == 0 {
            // No mapping can make an address of this: a reject with its reason.
            "n/a".to_string()
        } else if r.chance(8) {
            String::new()
        } else {
            let dom = r.pick(&["ACME.com", "example.COM", "steel-co.net"]);
            match r.below(3) {
                0 => format!(" {f}.{l}@{dom} "),
                1 => format!("{f}.{l} @{dom}"),
                _ => format!("{}{}@{dom}", f.to_uppercase(), i),
            }
        };
        let (city, state) = cities[r.below(cities.len() as u64) as usize];
        emit(
            2,
            vec![
                Cell::Int(i as i64),
                text(format!("C{i:06}")),
                text(format!("{} #{i} ", r.pick(&companies))),
                text(format!("{f} {l}")),
                text(email),
                phone(&mut r),
                text(format!("{} Mill Rd", 100 + r.below(9000))),
                text(city),
                text(state),
                text(format!("{:05}", r.below(100_000))),
                text(if state == "ON" {
                    "CA"
                } else if r.chance(10) {
                    "us"
                } else {
                    "US"
                }),
                if r.chance(5) { num("") } else { money(&mut r, 250_000) },
                flag(&mut r),
                if r.chance(3) {
                    Cell::Null
                } else {
                    Cell::Time(day(&mut r, 1988, 37), TimeText::DdMonYy)
                },
                // Every 37th customer is marked deleted: left out by the mapping's `where`.
                text(if i % 37 == 0 { "D" } else { "A" }),
                last_modified(&mut r, i, customers),
            ],
        );
    }
    let live_customer = |r: &mut Rng| loop {
        let c = 1 + r.below(customers);
        if !c.is_multiple_of(37) {
            return c as i64;
        }
    };
    // Coils: which customer each belongs to, for the jobs that process them.
    let mut coil_customer = Vec::with_capacity(coils as usize);
    for i in 1..=coils {
        let c = live_customer(&mut r);
        coil_customer.push(c);
        let gauge = if i % 499 == 0 {
            // More decimals than the target's numeric(6,3) keeps: rejected, never rounded.
            "0.06255".to_string()
        } else {
            format!("{}.{:03}", r.below(6), r.below(1000))
        };
        emit(
            3,
            vec![
                Cell::Int(i as i64),
                text(format!("K{:07}", 1_000_000 + i)),
                Cell::Int(c),
                text(format!("H{:06}", r.below(1_000_000))),
                text(r.pick(&["304 SS", " 316l ", "A36", "1008 CR", "galv g90", "HSLA 50"])),
                num(gauge),
                Cell::Real((600 + r.below(1400)) as f64 + r.below(4) as f64 * 0.25),
                num(format!("{}.{:03}", 5_000 + r.below(20_000), r.below(1000))),
                num(format!("{}.{}", 100 + r.below(2000), r.below(10))),
                text(format!("BAY-{} ROW {:02}", 1 + r.below(6), 1 + r.below(40))),
                text(r.pick(&["R", "P", "P", "H", "S"])),
                Cell::Time(day(&mut r, 2015, 10), TimeText::DdMonYy),
                text(r.pick(&[
                    "Nucor Gallatin",
                    "US Steel Gary",
                    "AK Steel",
                    "Steel Dynamics",
                    " ArcelorMittal ",
                ])),
                text(r.pick(&["2B", "mill", "pickled & oiled", "CR matte", ""])),
                text(r.pick(&["", "", "G90", "AZ50", "e-coat"])),
                text(r.pick(&["Y", "N", "N", "N", ""])),
                text(r.pick(&[
                    "",
                    "edge wave\tseen",
                    "OK",
                    "see \"lab\" report\nline 2",
                    "telescoped   ",
                ])),
                Cell::Time(moment(&mut r, 2015, 10), TimeText::Iso),
                last_modified(&mut r, i, coils),
            ],
        );
    }
    for i in 1..=jobs {
        let coil = 1 + r.below(coils);
        let status = r.pick(&["S", "R", "C", "C", "C", "H", "X"]);
        let start = moment(&mut r, 2016, 9);
        let end = start + Duration::minutes(30 + r.below(600) as i64);
        let (act_start, act_end) = match status {
            "R" => (Cell::Time(start, TimeText::Iso), Cell::Null),
            "C" => (
                Cell::Time(start + Duration::minutes(r.below(60) as i64), TimeText::Iso),
                Cell::Time(end + Duration::minutes(r.below(60) as i64), TimeText::Iso),
            ),
            _ => (Cell::Null, Cell::Null),
        };
        emit(
            4,
            vec![
                Cell::Int(i as i64),
                text(format!("J-{i:08} ")),
                Cell::Int(coil_customer[(coil - 1) as usize]),
                Cell::Int(coil as i64),
                text(format!("L{}", 1 + r.below(lines))),
                text(r.pick(&["SLIT", "CTL", "PICKLE", "TEMPER", "BLANK", "slit "])),
                text(status),
                Cell::Int(1 + r.below(5) as i64),
                Cell::Time(start, TimeText::Iso),
                Cell::Time(end, TimeText::Iso),
                act_start,
                act_end,
                num(format!("{}.{:03}", r.below(6), r.below(1000))),
                num(format!("{}.{}", 300 + r.below(1500), r.below(100))),
                Cell::Int(1 + r.below(400) as i64),
                text(r.pick(&["JMK", "ral", "T. Nguyen", "", "SUPERVISOR"])),
                text(r.pick(&["", "", "rush for Toledo", "re-slit after QA", "hold for customer OK   "])),
                text(if i % 9 == 0 { "Y" } else { "N" }),
                Cell::Time(start - Duration::days(1 + r.below(20) as i64), TimeText::Iso),
                last_modified(&mut r, i, jobs),
            ],
        );
    }
    for i in 1..=skids {
        let net = 200 + r.below(4000);
        emit(
            5,
            vec![
                Cell::Int(i as i64),
                text(format!("SK{i:08}")),
                Cell::Int((1 + r.below(jobs)) as i64),
                Cell::Int(1 + r.below(60) as i64),
                num(format!("{net}.{}", r.below(10))),
                num(format!("{}.{}", net + 20 + r.below(80), r.below(10))),
                text(format!("DOCK {}", 1 + r.below(8))),
                text(r.pick(&["O", "O", "S"])),
                // Minutes, in the 12-hour spelling the shop floor terminals used.
                Cell::Time(
                    day(&mut r, 2016, 9) + Duration::minutes(r.below(1440) as i64),
                    TimeText::Us12,
                ),
                last_modified(&mut r, i, skids),
            ],
        );
    }
    for i in 1..=qas {
        let (test, uom, lo, hi) = match r.below(5) {
            0 => ("TENSILE", "MPA", 340, 620),
            1 => ("YIELD", "MPA", 205, 450),
            2 => ("HARDNESS", "HRB", 60, 95),
            3 => ("ELONGATION", "%", 20, 60),
            _ => ("GAUGE", "MM", 0, 6),
        };
        emit(
            6,
            vec![
                Cell::Int(i as i64),
                Cell::Int((1 + r.below(jobs)) as i64),
                text(test),
                num(format!(
                    "{}.{:04}",
                    lo + r.below((hi - lo + 10) as u64) as i64 - 5,
                    r.below(10000)
                )),
                text(uom),
                num(lo.to_string()),
                num(hi.to_string()),
                text(r.pick(&["P", "P", "P", "F", ""])),
                text(r.pick(&["QA1", "qa2", "M. Okafor", "LAB"])),
                Cell::Time(
                    day(&mut r, 2016, 9) + Duration::minutes(r.below(1440) as i64),
                    TimeText::DdMonYyHm,
                ),
                last_modified(&mut r, i, qas),
            ],
        );
    }
    for i in 1..=shipments {
        let ship = day(&mut r, 2016, 9);
        let status = r.pick(&["P", "S", "D", "D"]);
        let net = 1000 + r.below(40_000);
        emit(
            7,
            vec![
                Cell::Int(i as i64),
                text(format!("BOL{i:07}")),
                Cell::Int(live_customer(&mut r)),
                Cell::Int((1 + r.below(carriers)) as i64),
                Cell::Time(ship, TimeText::DdMonYy),
                if status == "D" {
                    Cell::Time(ship + Duration::days(1 + r.below(9) as i64), TimeText::DdMonYy)
                } else {
                    Cell::Null
                },
                text(status),
                num(format!("{}.{}", net + 50 + r.below(500), r.below(10))),
                num(format!("{net}.{}", r.below(10))),
                Cell::Int(1 + r.below(30) as i64),
                text(r.pick(&["Toledo", "Detroit", " Windsor", "Chicago", "Gary "])),
                last_modified(&mut r, i, shipments),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_one_is_the_documents_record_counts_and_rows_fit_their_tables() {
        assert_eq!(counts(1.0), [25, 10, 1234, 45_678, 23_456, 8901, 12_345, 6789]);
        assert_eq!(counts(1.0).iter().sum::<u64>(), 98_438);
        let mut seen = [0u64; 8];
        generate(0.05, &mut |t, row| {
            assert_eq!(row.len(), TABLES[t].cols.len(), "{}", TABLES[t].name);
            seen[t] += 1;
        });
        assert_eq!(seen, counts(0.05));
        // Deterministic.
        let mut a = Vec::new();
        generate(0.01, &mut |t, row| a.push((t, row)));
        let mut b = Vec::new();
        generate(0.01, &mut |t, row| b.push((t, row)));
        assert_eq!(a, b);
    }

    #[test]
    fn legacy_text_spellings() {
        let t = NaiveDate::from_ymd_opt(2019, 3, 7)
            .unwrap()
            .and_hms_micro_opt(15, 4, 5, 60)
            .unwrap();
        assert_eq!(Cell::time_text(&t, TimeText::DdMonYy), "07-MAR-19");
        assert_eq!(Cell::time_text(&t, TimeText::Iso), "2019-03-07 15:04:05");
        assert_eq!(Cell::time_text(&t, TimeText::IsoMicros), "2019-03-07 15:04:05.000060");
        assert_eq!(Cell::time_text(&t, TimeText::Us12), "03/07/2019 03:04 PM");
        assert_eq!(Cell::time_text(&t, TimeText::DdMonYyHm), "07-MAR-19 15:04");
    }
}
