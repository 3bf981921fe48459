//! LogQL's syntax tree: log queries (a stream selector and a pipeline) and metric
//! queries (range aggregations over them, vector aggregations, binary operations),
//! as Loki's `pkg/logql/syntax` has them.

use crate::model::Matcher;

/// A whole query.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A log query: the lines of the selected streams that pass the pipeline.
    Log(LogExpr),
    /// A query whose result is samples.
    Metric(MetricExpr),
}

/// `{selector} pipeline…`
#[derive(Debug, Clone, PartialEq)]
pub struct LogExpr {
    pub selector: Vec<Matcher>,
    pub pipeline: Vec<Stage>,
}

/// One stage of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// `|= "a"`, `!= "a"`, `|~ "re"`, `!~ "re"`, `|> "pattern"`, `!> "pattern"`;
    /// `or` joins alternatives of the same operator.
    LineFilter {
        op: LineFilterOp,
        values: Vec<LineFilterValue>,
    },
    /// `| json` (all fields) or `| json name="path", …`.
    Json(Vec<(String, String)>),
    /// `| logfmt` (`--strict`, `--keep-empty`), optionally with `name="key", …`.
    Logfmt {
        strict: bool,
        keep_empty: bool,
        params: Vec<(String, String)>,
    },
    /// `| regexp "(?P<name>…)"`.
    Regexp(String),
    /// `| pattern "<ip> - <_> …"`.
    Pattern(String),
    /// `| unpack`.
    Unpack,
    /// `| label filters`.
    LabelFilter(LabelFilter),
    /// `| line_format "{{.x}}"`.
    LineFormat(String),
    /// `| label_format a=b, c="{{.d}}"`.
    LabelFormat(Vec<LabelFormat>),
    /// `| drop a, b="v"` and `| keep a, b="v"`: names, or name matchers.
    Drop(Vec<NameOrMatcher>),
    Keep(Vec<NameOrMatcher>),
    /// `| decolorize`.
    Decolorize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFilterOp {
    Contains,
    NotContains,
    Matches,
    NotMatches,
    Pattern,
    NotPattern,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LineFilterValue {
    Text(String),
    /// `ip("192.168.0.0/16")`.
    Ip(String),
}

/// Label filters, joined with `and` (or `,`, or a space) and `or`.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFilter {
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
    /// `name op "value"` with `=`, `!=`, `=~`, `!~`.
    String(Matcher),
    /// `name op value` where the value is a number, a duration or a byte size.
    Compare {
        name: String,
        op: CompareOp,
        value: CompareValue,
    },
    /// `name = ip("…")`, `name != ip("…")`.
    Ip {
        name: String,
        negated: bool,
        pattern: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CompareValue {
    Number(f64),
    /// Seconds.
    Duration(f64),
    Bytes(u64),
}

/// `dst=src` (rename) or `dst="{{template}}"`.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFormat {
    Rename { dst: String, src: String },
    Template { dst: String, template: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum NameOrMatcher {
    Name(String),
    Matcher(Matcher),
}

/// `| unwrap name`, `| unwrap duration(name)`, `| unwrap bytes(name)`, then label
/// filters on the unwrapped samples (`__error__=""`).
#[derive(Debug, Clone, PartialEq)]
pub struct Unwrap {
    pub label: String,
    pub conversion: Conversion,
    pub post_filters: Vec<LabelFilter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    Number,
    Duration,
    /// `duration_seconds(…)`, the same as `duration`.
    DurationSeconds,
    Bytes,
}

/// A log query over a range: `{…} | … [5m] offset 1h`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRange {
    pub log: LogExpr,
    pub unwrap: Option<Unwrap>,
    /// Milliseconds.
    pub range_ms: i64,
    pub offset_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOp {
    Rate,
    RateCounter,
    CountOverTime,
    BytesRate,
    BytesOverTime,
    AbsentOverTime,
    SumOverTime,
    AvgOverTime,
    MaxOverTime,
    MinOverTime,
    FirstOverTime,
    LastOverTime,
    StdvarOverTime,
    StddevOverTime,
    QuantileOverTime,
}

impl RangeOp {
    /// Whether the operation takes `| unwrap` (Loki's `RangeAggregationExpr`
    /// validation).
    pub fn allows_unwrap(self) -> bool {
        !matches!(
            self,
            RangeOp::CountOverTime | RangeOp::BytesRate | RangeOp::BytesOverTime
        )
    }

    /// Whether the operation works on lines alone, without `| unwrap`.
    pub fn allows_lines(self) -> bool {
        matches!(
            self,
            RangeOp::Rate
                | RangeOp::CountOverTime
                | RangeOp::BytesRate
                | RangeOp::BytesOverTime
                | RangeOp::AbsentOverTime
        )
    }

    /// Whether the operation takes `by`/`without` (Loki's documentation: the
    /// unwrapped aggregations except `sum_over_time`, `absent_over_time`, `rate` and
    /// `rate_counter`).
    pub fn allows_grouping(self) -> bool {
        matches!(
            self,
            RangeOp::AvgOverTime
                | RangeOp::MaxOverTime
                | RangeOp::MinOverTime
                | RangeOp::StdvarOverTime
                | RangeOp::StddevOverTime
                | RangeOp::QuantileOverTime
                | RangeOp::FirstOverTime
                | RangeOp::LastOverTime
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Sort,
    SortDesc,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Unless,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

impl BinaryOp {
    /// Binding strength, PromQL's: `or` < `and`/`unless` < comparisons < `+ -` <
    /// `* / %` < `^`.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And | BinaryOp::Unless => 2,
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::Lt
            | BinaryOp::Le => 3,
            BinaryOp::Add | BinaryOp::Sub => 4,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => 5,
            BinaryOp::Pow => 6,
        }
    }

    pub fn is_comparison(self) -> bool {
        self.precedence() == 3
    }
}

/// `on (…)`/`ignoring (…)` and `group_left (…)`/`group_right (…)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VectorMatching {
    /// `Some((true, labels))`: `on`; `Some((false, labels))`: `ignoring`.
    pub on: Option<(bool, Vec<String>)>,
    /// `Some((true, labels))`: `group_left`; `Some((false, labels))`: `group_right`.
    pub group: Option<(bool, Vec<String>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricExpr {
    Range {
        op: RangeOp,
        /// `quantile_over_time`'s φ.
        param: Option<f64>,
        range: LogRange,
        grouping: Option<Grouping>,
    },
    Vector {
        op: VectorOp,
        /// `topk`/`bottomk`'s k.
        param: Option<f64>,
        grouping: Option<Grouping>,
        expr: Box<MetricExpr>,
    },
    Binary {
        op: BinaryOp,
        /// `bool` after a comparison.
        return_bool: bool,
        matching: VectorMatching,
        lhs: Box<MetricExpr>,
        rhs: Box<MetricExpr>,
    },
    Literal(f64),
    /// `vector(1)`.
    Vector1(f64),
    LabelReplace {
        expr: Box<MetricExpr>,
        dst: String,
        replacement: String,
        src: String,
        regex: String,
    },
}
