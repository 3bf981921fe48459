//! Go's `text/template`, in the two dialects ODIN meets it in: the templates of
//! LogQL's `line_format` and `label_format` stages, with Loki's template functions
//! (`pkg/logql/log/fmt.go`), and the labels and annotations of Prometheus's alerting
//! rules, with Prometheus's functions ([`prometheus`]).
//!
//! The Loki dialect:
//! Loki parses each template with `template.New("line").Option("missingkey=zero")`
//! and runs it over the line's labels as a `map[string]string`, so this does the same
//! and a template renders — or fails, with the same words — as it does in Loki:
//! - `.name` reads a label; a missing label is the empty string (`missingkey=zero`).
//! - Literals: "quoted" strings with Go's escapes, `raw` strings, 'c' characters,
//!   integers (`0x`, `0o`, `0b` and `_` as in Go), floats, `true`, `false`, `nil`.
//! - Pipelines (`a | f x`, the piped value going last), parenthesised pipelines,
//!   variables (`$x := …`, `$x = …`, `$`), `if`/`else if`/`else`/`end`, `with`/
//!   `else with`, comments and the `{{-`/`-}}` trim markers.
//! - Go's built-in functions but `index`, `slice` and `call`, and Loki's functions
//!   (its own and the Sprig ones it takes) but `fromJson` and `toDateInZone`. A
//!   function takes its arguments as the Go one does: a `string` parameter wants a
//!   string (`ToUpper 5` is an error), an `int` one an integer literal or a Go `int`,
//!   while Sprig's `interface{}` ones convert (`add "2" 3` is 5).
//! - `range`, `define`, `template`, `block`, `break` and `continue` are refused when
//!   the template is parsed: over a map of labels they have nothing to do.
//!
//! The Prometheus dialect (see [`prometheus`] for its data and functions) has `range`
//! (over query results and maps, with `break` and `continue`) and Go's `index`, but
//! neither Loki's nor Sprig's functions; `define`, `template` and `block` are refused
//! in both.
//!
//! Where this knowingly differs from Go (each a corner no LogQL query should reach):
//! time is always UTC (Loki formats in the server's zone, UTC in its images);
//! `.` and `$` alone — the whole label map — can only be read through, as a
//! `map[string]string` cannot be listed through [`Fields`]; a `time.Time` has only
//! the methods listed in `TIME_METHODS` (no `Month`, `Weekday`, `Add`, …); `printf`
//! has no `%b`, `%x` or `%p` for floats and pointers; regular expressions run on the
//! `regex` crate with `\d`, `\w`, `\s` and `\b` rewritten to Go's ASCII meanings;
//! `trunc` and `substr` count characters rather than bytes (Loki's own versions of
//! them), so they never split one; strings that `repeat`, `indent`, `nindent`,
//! `alignLeft` and `alignRight` build are capped at 16 MiB; errors always name the
//! template `line` (Loki names `label_format`'s `label`); and `Title` is there as
//! well as Sprig's `title`.

pub mod prometheus;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

use base64::Engine as _;
use regex::Regex;

// Go's number syntax, as text/template reads numbers.
use crate::gostrconv::{
    parse_float as parse_go_float, parse_int as parse_go_int, parse_uint as parse_go_uint,
};

/// What a template reads: the line's labels.
pub trait Fields {
    /// The label's value, `None` when the line has no such label.
    fn field(&self, name: &str) -> Option<&str>;
}

impl Fields for BTreeMap<String, String> {
    fn field(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// The language a template is written in: which functions it may call and which
/// actions it may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// LogQL's `line_format` and `label_format`: Loki's and Sprig's functions, no
    /// `range`.
    Loki,
    /// The labels and annotations of Prometheus's alerting rules: Prometheus's
    /// functions, `range`, `break`, `continue` and `index`.
    Prometheus,
}

impl Dialect {
    fn has_range(self) -> bool {
        self == Dialect::Prometheus
    }

    /// The functions this dialect adds to Go's builtins.
    fn functions(self) -> &'static [Func] {
        match self {
            Dialect::Loki => LOKI_FUNCS,
            Dialect::Prometheus => PROMETHEUS_FUNCS,
        }
    }

    /// What the parser says about an action the dialect does not have.
    fn unsupported_in(self) -> &'static str {
        match self {
            Dialect::Loki => "LogQL templates",
            Dialect::Prometheus => "ODIN's rule templates",
        }
    }
}

/// A parsed template, ready to render any number of times.
#[derive(Clone)]
pub struct Template {
    name: String,
    source: String,
    root: Vec<Item>,
}

impl Template {
    /// Parses a LogQL template; errors worded as Go's, e.g.
    /// `template: line:1: function "foo" not defined`,
    /// `template: line:1: unexpected "}" in operand`, `template: line:1: unexpected EOF`.
    pub fn parse(text: &str) -> Result<Template, String> {
        Template::parse_in(Dialect::Loki, NAME, text)
    }

    /// Parses `text` in `dialect`, under `name`: the name errors give the template
    /// (Go's `template.New(name)`).
    pub fn parse_in(dialect: Dialect, name: &str, text: &str) -> Result<Template, String> {
        let mut parser = Parser::new(lex(text), dialect, name);
        let root = parser.parse()?;
        Ok(Template {
            name: name.to_string(),
            source: text.to_string(),
            root,
        })
    }

    /// Renders with `fields` (labels), `line` (the current line, `__line__`) and `ts_ns`
    /// (the entry's time in Unix ns, `__timestamp__`). An execution error (e.g. wrong
    /// argument types, integer divide by zero) is an Err with Go-like text.
    pub fn render(&self, fields: &dyn Fields, line: &str, ts_ns: i64) -> Result<String, String> {
        let mut state = State {
            name: &self.name,
            src: &self.source,
            fields,
            line,
            ts: Time::from_unix_nanos(ts_ns),
            env: None,
            vars: vec![("$", Value::Labels)],
            out: String::new(),
            at: At::None,
        };
        state.walk_list(&Value::Labels, &self.root)?;
        Ok(state.out)
    }

    /// Renders over `dot` (also `$`), with Prometheus's environment for `query`,
    /// `externalURL` and `pathPrefix`.
    fn render_over<'a>(
        &'a self,
        dot: Value<'a>,
        env: &'a prometheus::Environment<'a>,
    ) -> Result<String, String> {
        let mut state = State {
            name: &self.name,
            src: &self.source,
            fields: &NoFields,
            line: "",
            ts: Time::ZERO,
            env: Some(env),
            vars: vec![("$", dot.clone())],
            out: String::new(),
            at: At::None,
        };
        state.walk_list(&dot, &self.root)?;
        Ok(state.out)
    }
}

/// The labels of a template that has none (a Prometheus template reads its data).
struct NoFields;

impl Fields for NoFields {
    fn field(&self, _: &str) -> Option<&str> {
        None
    }
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}

/// The template's name in error texts: Loki names its templates `line` (and, for
/// `label_format`, `label`; one name keeps the errors of both alike here).
const NAME: &str = "line";

/// The deepest nesting of parentheses and `if`/`with` blocks (an `else if` nests
/// too). Go allows 10000 parentheses; parsing and rendering recurse here, and a query
/// must not be able to run a thread out of stack.
const MAX_DEPTH: usize = 100;

/// The longest string `repeat`, `indent`, `nindent`, `alignLeft` and `alignRight`
/// build, and the longest output a template may write (16 MiB). Go builds whatever
/// it is asked to; a query or a rule must not be able to make the server allocate
/// gigabytes per line or per alert.
const MAX_BUILT: usize = 1 << 24;

// ---------------------------------------------------------------------------------
// Lexing, as text/template/parse/lex.go does it.
// ---------------------------------------------------------------------------------

/// The kinds of token, in Go's names (`itemX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tk {
    Error,
    Bool,
    Char,
    CharConstant,
    Complex,
    Assign,
    Declare,
    Eof,
    Field,
    Identifier,
    LeftDelim,
    LeftParen,
    Number,
    Pipe,
    RawString,
    RightDelim,
    RightParen,
    Space,
    String,
    Text,
    Variable,
    // Keywords: Go's parser names them `<word>` in its errors.
    Block,
    Break,
    Continue,
    Dot,
    Define,
    Else,
    End,
    If,
    Nil,
    Range,
    Template,
    With,
}

impl Tk {
    fn is_keyword(self) -> bool {
        matches!(
            self,
            Tk::Block
                | Tk::Break
                | Tk::Continue
                | Tk::Dot
                | Tk::Define
                | Tk::Else
                | Tk::End
                | Tk::If
                | Tk::Nil
                | Tk::Range
                | Tk::Template
                | Tk::With
        )
    }
}

fn keyword(word: &str) -> Option<Tk> {
    Some(match word {
        "block" => Tk::Block,
        "break" => Tk::Break,
        "continue" => Tk::Continue,
        "define" => Tk::Define,
        "else" => Tk::Else,
        "end" => Tk::End,
        "if" => Tk::If,
        "nil" => Tk::Nil,
        "range" => Tk::Range,
        "template" => Tk::Template,
        "with" => Tk::With,
        _ => return None,
    })
}

#[derive(Clone, Debug)]
struct Token {
    typ: Tk,
    /// Byte offset of the token in the template.
    pos: usize,
    val: String,
    /// 1-based line the token starts on.
    line: usize,
}

impl Token {
    /// The token as Go's parser names it in an error (`item.String`).
    fn describe(&self) -> String {
        match self.typ {
            Tk::Eof => "EOF".to_string(),
            Tk::Error => self.val.clone(),
            t if t.is_keyword() => format!("<{}>", self.val),
            _ if self.val.len() > 10 => {
                let head: String = self.val.chars().take(10).collect();
                format!("{}...", go_quote(&head))
            }
            _ => go_quote(&self.val),
        }
    }
}

/// The characters the trim markers remove, and that separate words in an action.
const SPACE_CHARS: &[char] = &[' ', '\t', '\r', '\n'];

fn is_space(c: char) -> bool {
    SPACE_CHARS.contains(&c)
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// `{{- ` starts an action that trims the space before it.
fn has_left_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(char::from(b[1]))
}

/// ` -}}` ends an action that trims the space after it.
fn has_right_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(char::from(b[0])) && b[1] == b'-'
}

fn left_trim_length(s: &str) -> usize {
    s.len() - s.trim_start_matches(SPACE_CHARS).len()
}

/// The lexer's states (Go's state functions).
#[derive(Clone, Copy)]
enum LexState {
    Text,
    LeftDelim,
    Comment,
    InsideAction,
    RightDelim,
    Done,
}

struct Lexer<'s> {
    input: &'s str,
    pos: usize,
    start: usize,
    /// Width of the last character read, for `backup`.
    width: usize,
    paren_depth: usize,
    /// A position and its line, so that lines are counted once over the input.
    line_mark: (usize, usize),
    items: Vec<Token>,
}

/// Splits a template into tokens; the last is always `Eof` or an `Error`.
fn lex(input: &str) -> Vec<Token> {
    let mut l = Lexer {
        input,
        pos: 0,
        start: 0,
        width: 0,
        paren_depth: 0,
        line_mark: (0, 1),
        items: Vec::new(),
    };
    let mut state = LexState::Text;
    loop {
        state = match state {
            LexState::Text => l.lex_text(),
            LexState::LeftDelim => l.lex_left_delim(),
            LexState::Comment => l.lex_comment(),
            LexState::InsideAction => l.lex_inside_action(),
            LexState::RightDelim => l.lex_right_delim(),
            LexState::Done => break,
        };
    }
    l.items
}

impl Lexer<'_> {
    fn next_char(&mut self) -> Option<char> {
        let c = self.input[self.pos..].chars().next();
        self.width = c.map_or(0, char::len_utf8);
        self.pos += self.width;
        c
    }

    fn peek_char(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn backup(&mut self) {
        self.pos -= self.width;
        self.width = 0;
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.next_char() {
            Some(c) if valid.contains(c) => true,
            _ => {
                self.backup();
                false
            }
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    fn line_at(&mut self, pos: usize) -> usize {
        let (mark, line) = if pos >= self.line_mark.0 {
            self.line_mark
        } else {
            (0, 1)
        };
        let line = line + self.input[mark..pos].matches('\n').count();
        self.line_mark = (pos, line);
        line
    }

    fn emit(&mut self, typ: Tk) {
        let line = self.line_at(self.start);
        self.items.push(Token {
            typ,
            pos: self.start,
            val: self.input[self.start..self.pos].to_string(),
            line,
        });
        self.start = self.pos;
    }

    fn ignore(&mut self) {
        self.start = self.pos;
    }

    /// Ends lexing with an error token.
    fn errorf(&mut self, msg: impl Into<String>) -> LexState {
        let line = self.line_at(self.start);
        self.items.push(Token {
            typ: Tk::Error,
            pos: self.start,
            val: msg.into(),
            line,
        });
        LexState::Done
    }

    /// Whether the input is at `}}`, and whether at ` -}}`.
    fn at_right_delim(&self) -> (bool, bool) {
        let rest = &self.input[self.pos..];
        if has_right_trim_marker(rest) && rest[2..].starts_with("}}") {
            (true, true)
        } else {
            (rest.starts_with("}}"), false)
        }
    }

    /// Whether the input can follow a word: `.X.Y` is two words, and `$x+2` is an
    /// error rather than `$x` then `+2`.
    fn at_terminator(&self) -> bool {
        match self.peek_char() {
            None => true,
            Some(c) if is_space(c) => true,
            Some('.' | ',' | '|' | ':' | ')' | '(') => true,
            Some(_) => self.input[self.pos..].starts_with("}}"),
        }
    }

    fn lex_text(&mut self) -> LexState {
        let Some(x) = self.input[self.pos..].find("{{") else {
            self.pos = self.input.len();
            if self.pos > self.start {
                self.emit(Tk::Text);
            }
            self.emit(Tk::Eof);
            return LexState::Done;
        };
        if x > 0 {
            self.pos += x;
            let mut trim = 0;
            if has_left_trim_marker(&self.input[self.pos + 2..]) {
                let text = &self.input[self.start..self.pos];
                trim = text.len() - text.trim_end_matches(SPACE_CHARS).len();
            }
            self.pos -= trim;
            if self.pos > self.start {
                self.emit(Tk::Text);
            }
            self.pos += trim;
            self.ignore();
        }
        LexState::LeftDelim
    }

    fn lex_left_delim(&mut self) -> LexState {
        self.pos += 2;
        let after = if has_left_trim_marker(&self.input[self.pos..]) {
            2
        } else {
            0
        };
        if self.input[self.pos + after..].starts_with("/*") {
            self.pos += after;
            self.ignore();
            return LexState::Comment;
        }
        self.emit(Tk::LeftDelim);
        self.pos += after;
        self.ignore();
        self.paren_depth = 0;
        LexState::InsideAction
    }

    fn lex_comment(&mut self) -> LexState {
        self.pos += 2;
        let Some(x) = self.input[self.pos..].find("*/") else {
            return self.errorf("unclosed comment");
        };
        self.pos += x + 2;
        let (delim, trim) = self.at_right_delim();
        if !delim {
            return self.errorf("comment ends before closing delimiter");
        }
        if trim {
            self.pos += 2;
        }
        self.pos += 2;
        if trim {
            self.pos += left_trim_length(&self.input[self.pos..]);
        }
        self.ignore();
        LexState::Text
    }

    fn lex_right_delim(&mut self) -> LexState {
        let (_, trim) = self.at_right_delim();
        if trim {
            self.pos += 2;
            self.ignore();
        }
        self.pos += 2;
        self.emit(Tk::RightDelim);
        if trim {
            self.pos += left_trim_length(&self.input[self.pos..]);
            self.ignore();
        }
        LexState::Text
    }

    fn lex_inside_action(&mut self) -> LexState {
        if self.at_right_delim().0 {
            if self.paren_depth == 0 {
                return LexState::RightDelim;
            }
            return self.errorf("unclosed left paren");
        }
        let Some(r) = self.next_char() else {
            return self.errorf("unclosed action");
        };
        match r {
            c if is_space(c) => {
                self.backup();
                return self.lex_space();
            }
            '=' => self.emit(Tk::Assign),
            ':' => {
                if self.next_char() != Some('=') {
                    return self.errorf("expected :=");
                }
                self.emit(Tk::Declare);
            }
            '|' => self.emit(Tk::Pipe),
            '"' => return self.lex_quote('"', Tk::String, "unterminated quoted string"),
            '\'' => {
                return self.lex_quote('\'', Tk::CharConstant, "unterminated character constant");
            }
            '`' => return self.lex_raw_quote(),
            '$' => return self.lex_variable(),
            '.' => match self.input.as_bytes().get(self.pos) {
                Some(b) if !b.is_ascii_digit() => return self.lex_field_or_variable(Tk::Field),
                _ => {
                    self.backup();
                    return self.lex_number();
                }
            },
            '+' | '-' | '0'..='9' => {
                self.backup();
                return self.lex_number();
            }
            c if is_alphanumeric(c) => {
                self.backup();
                return self.lex_identifier();
            }
            '(' => {
                self.paren_depth += 1;
                self.emit(Tk::LeftParen);
            }
            ')' => {
                if self.paren_depth == 0 {
                    return self.errorf("unexpected right paren");
                }
                self.paren_depth -= 1;
                self.emit(Tk::RightParen);
            }
            ' '..='~' => self.emit(Tk::Char),
            c => {
                return self.errorf(format!("unrecognized character in action: {}", sharp_u(c)));
            }
        }
        LexState::InsideAction
    }

    fn lex_space(&mut self) -> LexState {
        let mut spaces = 0;
        while self.peek_char().is_some_and(is_space) {
            self.next_char();
            spaces += 1;
        }
        // A space before ` -}}` belongs to the trim marker.
        if has_right_trim_marker(&self.input[self.pos - 1..])
            && self.input[self.pos + 1..].starts_with("}}")
        {
            self.backup();
            if spaces == 1 {
                return LexState::InsideAction;
            }
        }
        self.emit(Tk::Space);
        LexState::InsideAction
    }

    fn lex_identifier(&mut self) -> LexState {
        loop {
            let r = self.next_char();
            if r.is_some_and(is_alphanumeric) {
                continue;
            }
            self.backup();
            if !self.at_terminator() {
                return self.bad_character(r);
            }
            let word = &self.input[self.start..self.pos];
            let typ = if let Some(k) = keyword(word) {
                k
            } else if word == "true" || word == "false" {
                Tk::Bool
            } else {
                Tk::Identifier
            };
            self.emit(typ);
            return LexState::InsideAction;
        }
    }

    fn bad_character(&mut self, r: Option<char>) -> LexState {
        let c = r.unwrap_or(char::REPLACEMENT_CHARACTER);
        self.errorf(format!("bad character {}", sharp_u(c)))
    }

    fn lex_variable(&mut self) -> LexState {
        if self.at_terminator() {
            self.emit(Tk::Variable);
            return LexState::InsideAction;
        }
        self.lex_field_or_variable(Tk::Variable)
    }

    /// `.name` or `$name`, the `.` or `$` read; `.` alone is the dot.
    fn lex_field_or_variable(&mut self, typ: Tk) -> LexState {
        if self.at_terminator() {
            self.emit(if typ == Tk::Variable { typ } else { Tk::Dot });
            return LexState::InsideAction;
        }
        let r = loop {
            let r = self.next_char();
            if !r.is_some_and(is_alphanumeric) {
                self.backup();
                break r;
            }
        };
        if !self.at_terminator() {
            return self.bad_character(r);
        }
        self.emit(typ);
        LexState::InsideAction
    }

    /// A quoted string or character constant; the parser checks its escapes.
    fn lex_quote(&mut self, quote: char, typ: Tk, unterminated: &str) -> LexState {
        loop {
            match self.next_char() {
                Some('\\') => {
                    if matches!(self.next_char(), None | Some('\n')) {
                        return self.errorf(unterminated);
                    }
                }
                None | Some('\n') => return self.errorf(unterminated),
                Some(c) if c == quote => break,
                Some(_) => {}
            }
        }
        self.emit(typ);
        LexState::InsideAction
    }

    fn lex_raw_quote(&mut self) -> LexState {
        loop {
            match self.next_char() {
                None => return self.errorf("unterminated raw quoted string"),
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(Tk::RawString);
        LexState::InsideAction
    }

    fn lex_number(&mut self) -> LexState {
        if !self.scan_number() {
            let text = go_quote(&self.input[self.start..self.pos]);
            return self.errorf(format!("bad number syntax: {text}"));
        }
        if matches!(self.peek_char(), Some('+' | '-')) {
            // Complex: 1+2i, no spaces, ending in 'i'.
            if !self.scan_number() || !self.input[..self.pos].ends_with('i') {
                let text = go_quote(&self.input[self.start..self.pos]);
                return self.errorf(format!("bad number syntax: {text}"));
            }
            self.emit(Tk::Complex);
        } else {
            self.emit(Tk::Number);
        }
        LexState::InsideAction
    }

    /// Reads what may be a number; the parser decides whether it is one.
    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if self.peek_char().is_some_and(is_alphanumeric) {
            self.next_char();
            return false;
        }
        true
    }
}

/// A character as Go's `%#U` prints it: `U+0041 'A'`.
fn sharp_u(c: char) -> String {
    if is_print(c) {
        format!("U+{:04X} '{c}'", u32::from(c))
    } else {
        format!("U+{:04X}", u32::from(c))
    }
}

// ---------------------------------------------------------------------------------
// The parse tree and its parser, as text/template/parse/parse.go builds them.
// ---------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Item {
    Text(String),
    /// `{{pipeline}}`; prints the value unless the pipeline declares variables.
    Action(Pipe),
    If(Box<Branch>),
    With(Box<Branch>),
    /// `{{range pipeline}}`: the list once per element, the else list when none.
    Range(Box<Branch>),
    Break,
    Continue,
}

#[derive(Clone, Debug)]
struct Branch {
    pipe: Pipe,
    list: Vec<Item>,
    else_list: Option<Vec<Item>>,
}

#[derive(Clone, Debug)]
struct Pipe {
    pos: usize,
    decl: Vec<Decl>,
    /// `$x = …` rather than `$x := …`.
    is_assign: bool,
    cmds: Vec<Command>,
}

#[derive(Clone, Debug)]
struct Decl {
    name: String,
}

#[derive(Clone, Debug)]
struct Command {
    pos: usize,
    args: Vec<Node>,
    /// The pattern of `regexReplaceAll`, `regexReplaceAllLiteral` or `count` when it
    /// is a string literal, compiled once here rather than for every line (Go reports
    /// a bad pattern when the call runs, and so does this).
    regex: Option<Result<Regex, String>>,
}

/// An operand.
#[derive(Clone, Debug)]
enum Node {
    /// `.a.b`: `idents` is `["a", "b"]`.
    Field {
        pos: usize,
        idents: Vec<String>,
    },
    /// `$x.a`: `idents` is `["$x", "a"]`.
    Variable {
        pos: usize,
        idents: Vec<String>,
    },
    /// `(pipeline).a` or `f.a`.
    Chain {
        pos: usize,
        node: Box<Node>,
        fields: Vec<String>,
    },
    Identifier {
        pos: usize,
        func: &'static Func,
    },
    Dot {
        pos: usize,
    },
    Nil {
        pos: usize,
    },
    Bool {
        pos: usize,
        val: bool,
    },
    Number {
        pos: usize,
        text: String,
        num: Num,
    },
    Str {
        pos: usize,
        quoted: String,
        text: String,
    },
    Pipe(Box<Pipe>),
}

/// A number literal and the Go types it fits.
#[derive(Clone, Copy, Debug)]
struct Num {
    int: Option<i64>,
    uint: Option<u64>,
    float: Option<f64>,
}

impl Node {
    fn pos(&self) -> usize {
        match self {
            Node::Field { pos, .. }
            | Node::Variable { pos, .. }
            | Node::Chain { pos, .. }
            | Node::Identifier { pos, .. }
            | Node::Dot { pos }
            | Node::Nil { pos }
            | Node::Bool { pos, .. }
            | Node::Number { pos, .. }
            | Node::Str { pos, .. } => *pos,
            Node::Pipe(p) => p.pos,
        }
    }

    /// The node as Go writes it back (`Node.String`), for error texts.
    fn write(&self, s: &mut String) {
        match self {
            Node::Field { idents, .. } => {
                for id in idents {
                    s.push('.');
                    s.push_str(id);
                }
            }
            Node::Variable { idents, .. } => s.push_str(&idents.join(".")),
            Node::Chain { node, fields, .. } => {
                if let Node::Pipe(p) = &**node {
                    s.push('(');
                    p.write(s);
                    s.push(')');
                } else {
                    node.write(s);
                }
                for f in fields {
                    s.push('.');
                    s.push_str(f);
                }
            }
            Node::Identifier { func, .. } => s.push_str(func.name),
            Node::Dot { .. } => s.push('.'),
            Node::Nil { .. } => s.push_str("nil"),
            Node::Bool { val, .. } => s.push_str(if *val { "true" } else { "false" }),
            Node::Number { text, .. } => s.push_str(text),
            Node::Str { quoted, .. } => s.push_str(quoted),
            Node::Pipe(p) => p.write(s),
        }
    }

    fn text(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }

    /// A literal: Go's parser rejects one as a later stage of a pipeline.
    fn is_literal(&self) -> bool {
        matches!(
            self,
            Node::Bool { .. }
                | Node::Dot { .. }
                | Node::Nil { .. }
                | Node::Number { .. }
                | Node::Str { .. }
        )
    }
}

impl Pipe {
    fn write(&self, s: &mut String) {
        if !self.decl.is_empty() {
            let names: Vec<&str> = self.decl.iter().map(|d| d.name.as_str()).collect();
            s.push_str(&names.join(", "));
            s.push_str(if self.is_assign { " = " } else { " := " });
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                s.push_str(" | ");
            }
            c.write(s);
        }
    }
}

impl Command {
    fn write(&self, s: &mut String) {
        for (i, arg) in self.args.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            if let Node::Pipe(p) = arg {
                s.push('(');
                p.write(s);
                s.push(')');
            } else {
                arg.write(s);
            }
        }
    }
}

/// What a control action ended on.
enum Parsed {
    Item(Item),
    End,
    Else,
}

struct Parser {
    toks: Vec<Token>,
    /// The next token.
    i: usize,
    /// How many tokens the parser has looked at: an error is reported on the line of
    /// the last of them, as Go's parser reports it on its last token read.
    seen: usize,
    /// Variables in scope.
    vars: Vec<String>,
    /// Line of the `{{` of the action being parsed, 0 between actions.
    action_line: usize,
    depth: usize,
    /// How many `range` lists enclose the action being parsed (`break` and
    /// `continue` need one).
    range_depth: usize,
    dialect: Dialect,
    name: String,
}

impl Parser {
    fn new(toks: Vec<Token>, dialect: Dialect, name: &str) -> Parser {
        Parser {
            toks,
            i: 0,
            seen: 0,
            vars: vec!["$".to_string()],
            action_line: 0,
            depth: 0,
            range_depth: 0,
            dialect,
            name: name.to_string(),
        }
    }

    fn tok(&self, i: usize) -> Token {
        match self.toks.get(i).or(self.toks.last()) {
            Some(t) => t.clone(),
            None => Token {
                typ: Tk::Eof,
                pos: 0,
                val: String::new(),
                line: 1,
            },
        }
    }

    fn next_tok(&mut self) -> Token {
        let t = self.tok(self.i);
        self.i += 1;
        self.seen = self.seen.max(self.i);
        t
    }

    fn peek(&mut self) -> Token {
        self.seen = self.seen.max(self.i + 1);
        self.tok(self.i)
    }

    fn backup(&mut self) {
        self.i = self.i.saturating_sub(1);
    }

    fn next_non_space(&mut self) -> Token {
        loop {
            let t = self.next_tok();
            if t.typ != Tk::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Token {
        let t = self.next_non_space();
        self.backup();
        t
    }

    fn errorf(&self, msg: impl std::fmt::Display) -> String {
        let line = self.tok(self.seen.saturating_sub(1)).line;
        format!("template: {}:{line}: {msg}", self.name)
    }

    fn unexpected(&self, tok: &Token, context: &str) -> String {
        if tok.typ == Tk::Error {
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != tok.line {
                extra = format!(" in action started at {}:{}", self.name, self.action_line);
                if tok.val.ends_with(" action") {
                    extra = extra[" in action".len()..].to_string();
                }
            }
            return self.errorf(format!("{}{extra}", tok.describe()));
        }
        self.errorf(format!("unexpected {} in {context}", tok.describe()))
    }

    fn expect(&mut self, typ: Tk, context: &str) -> Result<Token, String> {
        let t = self.next_non_space();
        if t.typ != typ {
            return Err(self.unexpected(&t, context));
        }
        Ok(t)
    }

    fn parse(&mut self) -> Result<Vec<Item>, String> {
        let mut root = Vec::new();
        while self.peek().typ != Tk::Eof {
            match self.text_or_action()? {
                Parsed::Item(item) => root.push(item),
                Parsed::End => return Err(self.errorf("unexpected {{end}}")),
                Parsed::Else => return Err(self.errorf("unexpected {{else}}")),
            }
        }
        Ok(root)
    }

    /// Items up to an `{{end}}` or `{{else}}`, returned with which it was.
    fn item_list(&mut self) -> Result<(Vec<Item>, Parsed), String> {
        let mut list = Vec::new();
        while self.peek_non_space().typ != Tk::Eof {
            match self.text_or_action()? {
                Parsed::Item(item) => list.push(item),
                end => return Ok((list, end)),
            }
        }
        Err(self.errorf("unexpected EOF"))
    }

    fn text_or_action(&mut self) -> Result<Parsed, String> {
        let t = self.next_non_space();
        match t.typ {
            Tk::Text => Ok(Parsed::Item(Item::Text(t.val))),
            Tk::LeftDelim => {
                self.action_line = t.line;
                let parsed = self.action();
                self.action_line = 0;
                parsed
            }
            _ => Err(self.unexpected(&t, "input")),
        }
    }

    fn action(&mut self) -> Result<Parsed, String> {
        let t = self.next_non_space();
        match t.typ {
            Tk::Range if self.dialect.has_range() => Ok(Parsed::Item(Item::Range(Box::new(
                self.parse_control("range")?,
            )))),
            Tk::Break | Tk::Continue if self.dialect.has_range() => {
                self.expect(Tk::RightDelim, &format!("{{{{{}}}}}", t.val))?;
                if self.range_depth == 0 {
                    return Err(self.errorf(format!("{{{{{}}}}} outside {{{{range}}}}", t.val)));
                }
                Ok(Parsed::Item(if t.typ == Tk::Break {
                    Item::Break
                } else {
                    Item::Continue
                }))
            }
            Tk::Block | Tk::Break | Tk::Continue | Tk::Define | Tk::Range | Tk::Template => {
                Err(self.errorf(format!(
                    "{{{{{}}}}} is not supported in {}",
                    t.val,
                    self.dialect.unsupported_in()
                )))
            }
            Tk::Else => self.else_control(),
            Tk::End => {
                self.expect(Tk::RightDelim, "end")?;
                Ok(Parsed::End)
            }
            Tk::If => Ok(Parsed::Item(Item::If(Box::new(self.parse_control("if")?)))),
            Tk::With => Ok(Parsed::Item(Item::With(Box::new(
                self.parse_control("with")?,
            )))),
            _ => {
                self.backup();
                let pipe = self.pipeline("command", Tk::RightDelim)?;
                Ok(Parsed::Item(Item::Action(pipe)))
            }
        }
    }

    fn else_control(&mut self) -> Result<Parsed, String> {
        // `{{else if …` and `{{else with …` leave the `if` or `with` to read next.
        let peek = self.peek_non_space();
        if peek.typ != Tk::If && peek.typ != Tk::With {
            self.expect(Tk::RightDelim, "else")?;
        }
        Ok(Parsed::Else)
    }

    /// `if` or `with`, its keyword read: the pipeline, the list, and the `else`
    /// list, if any. Variables declared inside go out of scope at the `end`.
    fn parse_control(&mut self, context: &str) -> Result<Branch, String> {
        if self.depth >= MAX_DEPTH {
            return Err(self.errorf("max nesting depth exceeded"));
        }
        self.depth += 1;
        let mark = self.vars.len();
        let branch = self.parse_control_inner(context);
        self.vars.truncate(mark);
        self.depth -= 1;
        branch
    }

    fn parse_control_inner(&mut self, context: &str) -> Result<Branch, String> {
        let pipe = self.pipeline(context, Tk::RightDelim)?;
        let in_range = context == "range";
        self.range_depth += usize::from(in_range);
        let listed = self.item_list();
        self.range_depth -= usize::from(in_range);
        let (list, next) = listed?;
        let mut else_list = None;
        if let Parsed::Else = next {
            let peek = self.peek();
            if context == "if" && peek.typ == Tk::If {
                // {{if a}}…{{else if b}}…{{end}} is {{if a}}…{{else}}{{if b}}…{{end}}{{end}}
                // with the second end assumed.
                self.next_tok();
                let inner = self.parse_control("if")?;
                else_list = Some(vec![Item::If(Box::new(inner))]);
            } else if context == "with" && peek.typ == Tk::With {
                self.next_tok();
                let inner = self.parse_control("with")?;
                else_list = Some(vec![Item::With(Box::new(inner))]);
            } else {
                let (list, next) = self.item_list()?;
                if !matches!(next, Parsed::End) {
                    return Err(self.errorf("expected end; found {{else}}"));
                }
                else_list = Some(list);
            }
        }
        Ok(Branch {
            pipe,
            list,
            else_list,
        })
    }

    /// `declarations? command ('|' command)*`, up to `end` (`}}` or `)`).
    fn pipeline(&mut self, context: &str, end: Tk) -> Result<Pipe, String> {
        let first = self.peek_non_space();
        let mut pipe = Pipe {
            pos: first.pos,
            decl: Vec::new(),
            is_assign: false,
            cmds: Vec::new(),
        };
        // Declarations: `$x :=`, `$x =`, and in a range `$i, $e :=`.
        loop {
            let v = self.peek_non_space();
            if v.typ != Tk::Variable {
                break;
            }
            let at_variable = self.i;
            self.next_non_space();
            let next = self.peek_non_space();
            match next.typ {
                Tk::Assign | Tk::Declare => {
                    pipe.is_assign = next.typ == Tk::Assign;
                    self.next_non_space();
                    pipe.decl.push(Decl {
                        name: v.val.clone(),
                    });
                    self.vars.push(v.val);
                    break;
                }
                Tk::Char if next.val == "," => {
                    self.next_non_space();
                    pipe.decl.push(Decl {
                        name: v.val.clone(),
                    });
                    self.vars.push(v.val);
                    if context == "range" && pipe.decl.len() < 2 {
                        match self.peek_non_space().typ {
                            Tk::Variable | Tk::RightDelim | Tk::RightParen => continue,
                            _ => return Err(self.errorf("range can only initialize variables")),
                        }
                    }
                    return Err(self.errorf(format!("too many declarations in {context}")));
                }
                _ => {
                    self.i = at_variable;
                    break;
                }
            }
        }
        loop {
            let t = self.next_non_space();
            if t.typ == end {
                if pipe.cmds.is_empty() {
                    return Err(self.errorf(format!("missing value for {context}")));
                }
                for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
                    if c.args.first().is_some_and(Node::is_literal) {
                        return Err(self.errorf(format!(
                            "non executable command in pipeline stage {}",
                            i + 1
                        )));
                    }
                }
                return Ok(pipe);
            }
            match t.typ {
                Tk::Bool
                | Tk::CharConstant
                | Tk::Complex
                | Tk::Dot
                | Tk::Field
                | Tk::Identifier
                | Tk::Number
                | Tk::Nil
                | Tk::RawString
                | Tk::String
                | Tk::Variable
                | Tk::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return Err(self.unexpected(&t, context)),
            }
        }
    }

    /// Space-separated operands up to `|`, `}}` or `)`; a `|` is consumed.
    fn command(&mut self) -> Result<Command, String> {
        let pos = self.peek_non_space().pos;
        let mut args = Vec::new();
        loop {
            self.peek_non_space();
            if let Some(operand) = self.operand()? {
                args.push(operand);
            }
            let t = self.next_tok();
            match t.typ {
                Tk::Space => continue,
                Tk::RightDelim | Tk::RightParen => self.backup(),
                Tk::Pipe => {}
                _ => return Err(self.unexpected(&t, "operand")),
            }
            break;
        }
        if args.is_empty() {
            return Err(self.errorf("empty command"));
        }
        let regex = match (args.first(), args.get(1)) {
            (Some(Node::Identifier { func, .. }), Some(Node::Str { text, .. }))
                if matches!(
                    func.id,
                    F::RegexReplaceAll
                        | F::RegexReplaceAllLiteral
                        | F::Count
                        | F::ReReplaceAll
                        | F::Match
                ) =>
            {
                Some(go_regex(text))
            }
            _ => None,
        };
        Ok(Command { pos, args, regex })
    }

    /// A term and the fields read through it: `.a.b`, `$x.a`, `(…).a`.
    fn operand(&mut self) -> Result<Option<Node>, String> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().typ != Tk::Field {
            return Ok(Some(node));
        }
        let pos = self.peek().pos;
        let mut fields = Vec::new();
        while self.peek().typ == Tk::Field {
            let f = self.next_tok();
            fields.push(f.val[1..].to_string());
        }
        Ok(Some(match node {
            Node::Field { mut idents, .. } => {
                idents.extend(fields);
                Node::Field { pos, idents }
            }
            Node::Variable { mut idents, .. } => {
                idents.extend(fields);
                Node::Variable { pos, idents }
            }
            n if n.is_literal() => {
                return Err(self.errorf(format!("unexpected . after term {}", go_quote(&n.text()))));
            }
            n => Node::Chain {
                pos,
                node: Box::new(n),
                fields,
            },
        }))
    }

    fn term(&mut self) -> Result<Option<Node>, String> {
        let t = self.next_non_space();
        let pos = t.pos;
        Ok(Some(match t.typ {
            Tk::Identifier => match lookup_func(self.dialect, &t.val) {
                Some(func) => Node::Identifier { pos, func },
                None => {
                    return Err(self.errorf(format!("function {} not defined", go_quote(&t.val))));
                }
            },
            Tk::Dot => Node::Dot { pos },
            Tk::Nil => Node::Nil { pos },
            Tk::Variable => {
                if !self.vars.contains(&t.val) {
                    return Err(self.errorf(format!("undefined variable {}", go_quote(&t.val))));
                }
                Node::Variable {
                    pos,
                    idents: vec![t.val],
                }
            }
            Tk::Field => Node::Field {
                pos,
                idents: vec![t.val[1..].to_string()],
            },
            Tk::Bool => Node::Bool {
                pos,
                val: t.val == "true",
            },
            Tk::CharConstant | Tk::Complex | Tk::Number => {
                let num = parse_number(&t.val, t.typ).map_err(|e| self.errorf(e))?;
                Node::Number {
                    pos,
                    text: t.val,
                    num,
                }
            }
            Tk::LeftParen => {
                if self.depth >= MAX_DEPTH {
                    return Err(self.errorf("max expression depth exceeded"));
                }
                self.depth += 1;
                let pipe = self.pipeline("parenthesized pipeline", Tk::RightParen);
                self.depth -= 1;
                Node::Pipe(Box::new(pipe?))
            }
            Tk::String | Tk::RawString => {
                let text = unquote(&t.val).map_err(|e| self.errorf(e))?;
                Node::Str {
                    pos,
                    quoted: t.val,
                    text,
                }
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

/// A number literal's value in each Go type it fits (`parse.NewNumber`).
fn parse_number(text: &str, typ: Tk) -> Result<Num, String> {
    if typ == Tk::CharConstant {
        let inner = &text[1..];
        let (c, _, tail) = unquote_char(inner, '\'').map_err(|()| "invalid syntax".to_string())?;
        if tail != "'" {
            return Err(format!("malformed character constant: {text}"));
        }
        let v = i64::from(c);
        return Ok(Num {
            int: Some(v),
            uint: Some(v.unsigned_abs()),
            float: Some(v as f64),
        });
    }
    if typ == Tk::Complex || text.ends_with('i') {
        return Err(format!(
            "complex number {} is not supported in LogQL templates",
            go_quote(text)
        ));
    }
    let uint = parse_go_uint(text);
    let int = parse_go_int(text);
    let mut num = Num {
        int,
        uint: if int == Some(0) { Some(0) } else { uint },
        float: None,
    };
    if let Some(i) = int {
        num.float = Some(i as f64);
    } else if let Some(u) = uint {
        num.float = Some(u as f64);
    } else if let Some(f) = parse_go_float(text) {
        // Parsed as a float but looking like an integer: too large for an int.
        if !text.contains(['.', 'e', 'E', 'p', 'P']) {
            return Err(format!("integer overflow: {}", go_quote(text)));
        }
        num.float = Some(f);
        // A whole float also counts as an integer where one holds it (`1e3`).
        let two63 = (1u64 << 63) as f64;
        if f.fract() == 0.0 && (-two63..two63).contains(&f) {
            num.int = Some(f as i64);
        }
        if f.fract() == 0.0 && (0.0..2.0 * two63).contains(&f) {
            num.uint = Some(f as u64);
        }
    }
    if num.int.is_none() && num.uint.is_none() && num.float.is_none() {
        return Err(format!("illegal number syntax: {}", go_quote(text)));
    }
    Ok(num)
}

// ---------------------------------------------------------------------------------
// Values and execution, as text/template/exec.go runs a tree.
// ---------------------------------------------------------------------------------

/// Go's two integer types that values here can have: a literal, `len`, `count` and
/// `int` give an `int`; Sprig's arithmetic gives an `int64`. They print and compare
/// alike, but only an `int` may go where a function takes an `int` (`trunc`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IntTy {
    Int,
    Int64,
}

/// A value while a template runs.
#[derive(Clone, Debug)]
enum Value<'a> {
    Str(Cow<'a, str>),
    Int(i64, IntTy),
    Float(f64),
    Bool(bool),
    Time(Time),
    /// Go's untyped nil, and what a field read through nil gives.
    Nil,
    /// The label map itself: `.` and `$` at the top of a LogQL template.
    Labels,
    /// A Go `map[string]string`: an alert's labels or external labels, a sample's
    /// labels. A missing key reads as the empty string (`missingkey=zero`).
    StrMap(Rc<BTreeMap<String, String>>),
    /// A Go `map[string]interface{}`, which `args` builds.
    AnyMap(Rc<BTreeMap<String, Value<'a>>>),
    /// What Prometheus's `query` returns (its `queryResult`, a `[]*sample`).
    Samples(Rc<Vec<Rc<prometheus::Sample>>>),
    /// One sample of a query result (`*sample`).
    Sample(Rc<prometheus::Sample>),
    /// The data an alert's templates run over.
    AlertData(Rc<prometheus::AlertData>),
}

impl Value<'_> {
    /// The value's Go type, as errors and `%T` name it.
    fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_, IntTy::Int) => "int",
            Value::Int(_, IntTy::Int64) => "int64",
            Value::Float(_) => "float64",
            Value::Bool(_) => "bool",
            Value::Time(_) => "time.Time",
            Value::Nil => "<nil>",
            Value::Labels | Value::StrMap(_) => "map[string]string",
            Value::AnyMap(_) => "map[string]interface {}",
            Value::Samples(_) => "template.queryResult",
            Value::Sample(_) => "*template.sample",
            Value::AlertData(_) => prometheus::ALERT_DATA_TYPE,
        }
    }
}

fn string<'a>(s: String) -> Value<'a> {
    Value::Str(Cow::Owned(s))
}

fn int<'a>(n: usize) -> Value<'a> {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX), IntTy::Int)
}

/// Go's truth: false, 0, the empty string and nil are false.
fn truth(v: &Value) -> bool {
    match v {
        Value::Str(s) => !s.is_empty(),
        Value::Int(n, _) => *n != 0,
        Value::Float(f) => *f != 0.0,
        Value::Bool(b) => *b,
        Value::Time(_) | Value::Labels | Value::Sample(_) | Value::AlertData(_) => true,
        Value::StrMap(m) => !m.is_empty(),
        Value::AnyMap(m) => !m.is_empty(),
        Value::Samples(v) => !v.is_empty(),
        Value::Nil => false,
    }
}

/// The Go type a function's parameter has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum P {
    Str,
    Int,
    Float,
    Time,
    /// Prometheus's `queryResult`.
    Samples,
    /// Prometheus's `*sample`.
    Sample,
    /// `interface{}` (or, for Go's builtins, `reflect.Value`): anything.
    Any,
}

impl P {
    fn go_name(self) -> &'static str {
        match self {
            P::Str => "string",
            P::Int => "int",
            P::Float => "float64",
            P::Time => "time.Time",
            P::Samples => "template.queryResult",
            P::Sample => "*template.sample",
            P::Any => "interface {}",
        }
    }
}

/// How a list ended: run through, or stopped by `{{break}}` or `{{continue}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Next,
    Break,
    Continue,
}

/// The node being evaluated, which an execution error names (Go's `state.at`).
#[derive(Clone, Copy)]
enum At<'a> {
    None,
    Node(&'a Node),
    Cmd(&'a Command),
    Pipe(&'a Pipe),
    Action(&'a Pipe),
}

impl At<'_> {
    fn pos(&self) -> Option<usize> {
        match self {
            At::None => None,
            At::Node(n) => Some(n.pos()),
            At::Cmd(c) => Some(c.pos),
            At::Pipe(p) | At::Action(p) => Some(p.pos),
        }
    }

    fn context(&self) -> String {
        let mut s = String::new();
        match self {
            At::None => {}
            At::Node(n) => n.write(&mut s),
            At::Cmd(c) => c.write(&mut s),
            At::Pipe(p) => p.write(&mut s),
            At::Action(p) => {
                s.push_str("{{");
                p.write(&mut s);
                s.push_str("}}");
            }
        }
        s
    }
}

/// A call of a function or method, its operands not yet evaluated.
struct Call<'a> {
    func: &'static Func,
    /// Where an error the function returns is reported.
    at: At<'a>,
    /// The arguments written after the name.
    args: &'a [Node],
    /// The value piped in, passed last.
    fin: Option<Value<'a>>,
    regex: Option<&'a Result<Regex, String>>,
    /// The time a method is called on.
    recv: Option<Time>,
}

struct State<'a> {
    /// The template's name, which errors give.
    name: &'a str,
    src: &'a str,
    fields: &'a dyn Fields,
    line: &'a str,
    ts: Time,
    /// Prometheus's `query`, `externalURL` and `pathPrefix` (the Prometheus dialect).
    env: Option<&'a prometheus::Environment<'a>>,
    vars: Vec<(&'a str, Value<'a>)>,
    out: String,
    at: At<'a>,
}

impl<'a> State<'a> {
    /// An execution error in Go's words: where, in which template, at which node.
    fn errorf(&self, msg: impl std::fmt::Display) -> String {
        let name = self.name;
        let Some(pos) = self.at.pos() else {
            return format!("template: {name}: {msg}");
        };
        let before = &self.src[..pos.min(self.src.len())];
        let (line, col) = match before.rfind('\n') {
            None => (1, pos),
            Some(nl) => (1 + before.matches('\n').count(), pos - (nl + 1)),
        };
        format!(
            "template: {name}:{line}:{col}: executing {} at <{}>: {msg}",
            go_quote(name),
            self.at.context()
        )
    }

    /// Runs the items of a list; a `break` or `continue` stops it and is handed up to
    /// the enclosing `range`.
    fn walk_list(&mut self, dot: &Value<'a>, list: &'a [Item]) -> Result<Flow, String> {
        for item in list {
            let flow = match item {
                Item::Text(t) => {
                    self.out.push_str(t);
                    Flow::Next
                }
                Item::Action(pipe) => {
                    let v = self.eval_pipeline(dot, pipe)?;
                    if pipe.decl.is_empty() {
                        self.at = At::Action(pipe);
                        self.print_value(&v)?;
                    }
                    Flow::Next
                }
                Item::If(b) => self.walk_if_or_with(false, dot, b)?,
                Item::With(b) => self.walk_if_or_with(true, dot, b)?,
                Item::Range(b) => self.walk_range(dot, b)?,
                Item::Break => Flow::Break,
                Item::Continue => Flow::Continue,
            };
            if self.out.len() > MAX_BUILT {
                return Err(self.errorf(format!(
                    "the output would be more than the {MAX_BUILT} bytes a template may build"
                )));
            }
            if flow != Flow::Next {
                return Ok(flow);
            }
        }
        Ok(Flow::Next)
    }

    fn walk_if_or_with(
        &mut self,
        with: bool,
        dot: &Value<'a>,
        branch: &'a Branch,
    ) -> Result<Flow, String> {
        let mark = self.vars.len();
        let val = self.eval_pipeline(dot, &branch.pipe)?;
        let flow = if truth(&val) {
            if with {
                self.walk_list(&val, &branch.list)?
            } else {
                self.walk_list(dot, &branch.list)?
            }
        } else if let Some(list) = &branch.else_list {
            self.walk_list(dot, list)?
        } else {
            Flow::Next
        };
        self.vars.truncate(mark);
        Ok(flow)
    }

    /// `{{range}}` as Go's `walkRange`: over a query result's samples in order, or a
    /// map's values in key order; nil or empty runs the else list. With one variable
    /// it holds the element; with two, the index (or key) and the element.
    fn walk_range(&mut self, dot: &Value<'a>, branch: &'a Branch) -> Result<Flow, String> {
        let mark = self.vars.len();
        let val = self.eval_pipeline(dot, &branch.pipe)?;
        let elements: Vec<(Value<'a>, Value<'a>)> = match &val {
            Value::Samples(samples) => samples
                .iter()
                .enumerate()
                .map(|(i, s)| (int(i), Value::Sample(Rc::clone(s))))
                .collect(),
            Value::StrMap(m) => m
                .iter()
                .map(|(k, v)| (string(k.clone()), string(v.clone())))
                .collect(),
            Value::AnyMap(m) => m
                .iter()
                .map(|(k, v)| (string(k.clone()), v.clone()))
                .collect(),
            Value::Nil => Vec::new(),
            v => {
                let mut shown = String::new();
                print_arg(&mut shown, &Flags::default(), v, 'v');
                return Err(self.errorf(format!("range can't iterate over {shown}")));
            }
        };
        if elements.is_empty() {
            let flow = match &branch.else_list {
                Some(list) => self.walk_list(dot, list)?,
                None => Flow::Next,
            };
            self.vars.truncate(mark);
            return Ok(flow);
        }
        // The declared variables sit on top of the stack, the last declared topmost.
        let decls = branch.pipe.decl.len();
        let body = self.vars.len();
        for (index, elem) in elements {
            match (decls, branch.pipe.is_assign) {
                (0, _) => {}
                (1, false) => self.vars[body - 1].1 = elem.clone(),
                (_, false) => {
                    self.vars[body - 1].1 = elem.clone();
                    self.vars[body - 2].1 = index;
                }
                (1, true) => self.set_var(&branch.pipe.decl[0].name, elem.clone())?,
                (_, true) => {
                    self.set_var(&branch.pipe.decl[0].name, index)?;
                    self.set_var(&branch.pipe.decl[1].name, elem.clone())?;
                }
            }
            let flow = self.walk_list(&elem, &branch.list)?;
            self.vars.truncate(body);
            if flow == Flow::Break {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(Flow::Next)
    }

    fn print_value(&mut self, v: &Value<'a>) -> Result<(), String> {
        match v {
            Value::Nil => self.out.push_str("<no value>"),
            Value::Labels => {
                return Err(
                    self.errorf("can't print the label map; name a label instead, e.g. .app")
                );
            }
            v => print_arg(&mut self.out, &Flags::default(), v, 'v'),
        }
        Ok(())
    }

    fn eval_pipeline(&mut self, dot: &Value<'a>, pipe: &'a Pipe) -> Result<Value<'a>, String> {
        self.at = At::Pipe(pipe);
        let mut value = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value)?);
        }
        let value = value.unwrap_or(Value::Nil);
        for d in &pipe.decl {
            if pipe.is_assign {
                self.set_var(&d.name, value.clone())?;
            } else {
                self.vars.push((&d.name, value.clone()));
            }
        }
        Ok(value)
    }

    fn set_var(&mut self, name: &str, value: Value<'a>) -> Result<(), String> {
        match self.vars.iter_mut().rev().find(|(n, _)| *n == name) {
            Some(slot) => {
                slot.1 = value;
                Ok(())
            }
            None => Err(self.errorf(format!("undefined variable: {name}"))),
        }
    }

    fn var_value(&self, name: &str) -> Result<Value<'a>, String> {
        match self.vars.iter().rev().find(|(n, _)| *n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => Err(self.errorf(format!("undefined variable: {name}"))),
        }
    }

    fn eval_command(
        &mut self,
        dot: &Value<'a>,
        cmd: &'a Command,
        fin: Option<Value<'a>>,
    ) -> Result<Value<'a>, String> {
        let Some(first) = cmd.args.first() else {
            return Ok(Value::Nil);
        };
        match first {
            Node::Field { idents, .. } => {
                self.at = At::Node(first);
                return self.eval_field_chain(dot, dot.clone(), first, idents, &cmd.args, fin);
            }
            Node::Chain { .. } => return self.eval_chain(dot, first, &cmd.args, fin),
            Node::Identifier { func, .. } => {
                self.at = At::Node(first);
                return self.eval_call(
                    dot,
                    Call {
                        func,
                        at: At::Cmd(cmd),
                        args: &cmd.args[1..],
                        fin,
                        regex: cmd.regex.as_ref(),
                        recv: None,
                    },
                );
            }
            Node::Pipe(p) => {
                self.not_a_function(&cmd.args, &fin)?;
                return self.eval_pipeline(dot, p);
            }
            Node::Variable { .. } => return self.eval_variable(dot, first, &cmd.args, fin),
            _ => {}
        }
        self.at = At::Node(first);
        self.not_a_function(&cmd.args, &fin)?;
        match first {
            Node::Bool { val, .. } => Ok(Value::Bool(*val)),
            Node::Dot { .. } => Ok(dot.clone()),
            Node::Nil { .. } => Err(self.errorf("nil is not a command")),
            Node::Number { .. } => self.ideal_constant(first),
            Node::Str { text, .. } => Ok(Value::Str(Cow::Borrowed(text))),
            _ => Err(self.errorf(format!(
                "can't evaluate command {}",
                go_quote(&first.text())
            ))),
        }
    }

    fn not_a_function(&self, args: &[Node], fin: &Option<Value<'a>>) -> Result<(), String> {
        if args.len() > 1 || fin.is_some() {
            let name = args.first().map(Node::text).unwrap_or_default();
            return Err(self.errorf(format!("can't give argument to non-function {name}")));
        }
        Ok(())
    }

    /// A number literal where nothing says its type: `3` is an `int`, `3.0` and
    /// `1e3` a `float64`.
    fn ideal_constant(&self, node: &Node) -> Result<Value<'a>, String> {
        let Node::Number { text, num, .. } = node else {
            return Ok(Value::Nil);
        };
        let hex_int = text.len() > 2
            && text.starts_with('0')
            && text[1..].starts_with(['x', 'X'])
            && !text.contains(['p', 'P']);
        if let Some(f) = num.float {
            if !hex_int && !text.starts_with('\'') && text.contains(['.', 'e', 'E', 'p', 'P']) {
                return Ok(Value::Float(f));
            }
        }
        if let Some(i) = num.int {
            return Ok(Value::Int(i, IntTy::Int));
        }
        if num.uint.is_some() {
            return Err(self.errorf(format!("{text} overflows int")));
        }
        Ok(Value::Nil)
    }

    /// `(pipeline).a.b` or `f.a`: the term, then the fields through it.
    fn eval_chain(
        &mut self,
        dot: &Value<'a>,
        chain: &'a Node,
        args: &'a [Node],
        fin: Option<Value<'a>>,
    ) -> Result<Value<'a>, String> {
        let Node::Chain { node, fields, .. } = chain else {
            return Ok(Value::Nil);
        };
        self.at = At::Node(chain);
        if let Node::Nil { .. } = **node {
            return Err(self.errorf(format!(
                "indirection through explicit nil in {}",
                chain.text()
            )));
        }
        let receiver = self.eval_arg(dot, None, node)?;
        self.eval_field_chain(dot, receiver, chain, fields, args, fin)
    }

    fn eval_variable(
        &mut self,
        dot: &Value<'a>,
        node: &'a Node,
        args: &'a [Node],
        fin: Option<Value<'a>>,
    ) -> Result<Value<'a>, String> {
        let Node::Variable { idents, .. } = node else {
            return Ok(Value::Nil);
        };
        self.at = At::Node(node);
        let value = self.var_value(&idents[0])?;
        if idents.len() == 1 {
            self.not_a_function(args, &fin)?;
            return Ok(value);
        }
        self.eval_field_chain(dot, value, node, &idents[1..], args, fin)
    }

    /// `.X.Y.Z` through `receiver`; the last may be a method taking the arguments.
    fn eval_field_chain(
        &mut self,
        dot: &Value<'a>,
        receiver: Value<'a>,
        node: &'a Node,
        idents: &'a [String],
        args: &'a [Node],
        fin: Option<Value<'a>>,
    ) -> Result<Value<'a>, String> {
        let Some((last, init)) = idents.split_last() else {
            return Ok(receiver);
        };
        let mut receiver = receiver;
        for id in init {
            receiver = self.eval_field(dot, id, node, &[], None, receiver)?;
        }
        self.eval_field(dot, last, node, args, fin, receiver)
    }

    /// A label of the map, or a method of a time; `args` includes the field itself.
    fn eval_field(
        &mut self,
        dot: &Value<'a>,
        name: &'a str,
        node: &'a Node,
        args: &'a [Node],
        fin: Option<Value<'a>>,
        receiver: Value<'a>,
    ) -> Result<Value<'a>, String> {
        let has_args = args.len() > 1 || fin.is_some();
        match receiver {
            // A field of nothing is nothing, as with missingkey=zero.
            Value::Nil => Ok(Value::Nil),
            Value::Labels => {
                if has_args {
                    return Err(self.errorf(format!("{name} is not a method but has arguments")));
                }
                Ok(Value::Str(Cow::Borrowed(
                    self.fields.field(name).unwrap_or(""),
                )))
            }
            Value::StrMap(m) => {
                if has_args {
                    return Err(self.errorf(format!("{name} is not a method but has arguments")));
                }
                Ok(string(m.get(name).cloned().unwrap_or_default()))
            }
            Value::AnyMap(m) => {
                if has_args {
                    return Err(self.errorf(format!("{name} is not a method but has arguments")));
                }
                Ok(m.get(name).cloned().unwrap_or(Value::Nil))
            }
            Value::Sample(_) | Value::AlertData(_) if has_args => Err(self.errorf(format!(
                "{name} has arguments but cannot be invoked as function"
            ))),
            Value::Sample(sample) => match name {
                "Labels" => Ok(Value::StrMap(Rc::clone(&sample.labels))),
                "Value" => Ok(Value::Float(sample.value)),
                _ => Err(self.errorf(format!(
                    "can't evaluate field {name} in type *template.sample"
                ))),
            },
            Value::AlertData(data) => match name {
                "Labels" => Ok(Value::StrMap(Rc::clone(&data.labels))),
                "ExternalLabels" => Ok(Value::StrMap(Rc::clone(&data.external_labels))),
                "ExternalURL" => Ok(string(data.external_url.clone())),
                "Value" => Ok(Value::Float(data.value)),
                _ => Err(self.errorf(format!(
                    "can't evaluate field {name} in type {}",
                    prometheus::ALERT_DATA_TYPE
                ))),
            },
            Value::Time(t) => match TIME_METHODS.iter().find(|m| m.name == name) {
                Some(func) => self.eval_call(
                    dot,
                    Call {
                        func,
                        at: At::Node(node),
                        args: args.get(1..).unwrap_or(&[]),
                        fin,
                        regex: None,
                        recv: Some(t),
                    },
                ),
                None => Err(self.errorf(format!("can't evaluate field {name} in type time.Time"))),
            },
            v => Err(self.errorf(format!(
                "can't evaluate field {name} in type {}",
                v.type_name()
            ))),
        }
    }

    fn eval_call(&mut self, dot: &Value<'a>, call: Call<'a>) -> Result<Value<'a>, String> {
        let func = call.func;
        let args = call.args;
        let num_in = args.len() + usize::from(call.fin.is_some());
        let fixed = func.params.len();
        if func.variadic.is_some() {
            if num_in < fixed {
                return Err(self.errorf(format!(
                    "wrong number of args for {}: want at least {fixed} got {}",
                    func.name,
                    args.len()
                )));
            }
        } else if num_in != fixed {
            return Err(self.errorf(format!(
                "wrong number of args for {}: want {fixed} got {num_in}",
                func.name
            )));
        }
        // `and` and `or` stop at the first argument that decides them.
        if matches!(func.id, F::And | F::Or) {
            let is_or = func.id == F::Or;
            let mut v = Value::Nil;
            for a in args {
                v = self.eval_arg(dot, Some(P::Any), a)?;
                if truth(&v) == is_or {
                    return Ok(v);
                }
            }
            if let Some(fin) = call.fin {
                v = self.validate_type(fin, Some(P::Any))?;
            }
            return Ok(v);
        }
        let mut argv = Vec::with_capacity(num_in + 1);
        if let Some(t) = call.recv {
            argv.push(Value::Time(t));
        }
        let num_fixed = if func.variadic.is_some() {
            fixed
        } else {
            args.len()
        };
        for (i, a) in args.iter().enumerate() {
            let typ = if i < num_fixed {
                func.params.get(i).copied()
            } else {
                func.variadic
            };
            argv.push(self.eval_arg(dot, Some(typ.unwrap_or(P::Any)), a)?);
        }
        if let Some(fin) = call.fin {
            let typ = match func.variadic {
                Some(v) if num_in > num_fixed => v,
                _ => func.params.get(num_in - 1).copied().unwrap_or(P::Any),
            };
            argv.push(self.validate_type(fin, Some(typ))?);
        }
        match self.call(func, argv, call.regex) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.at = call.at;
                Err(self.errorf(format!("error calling {}: {e}", func.name)))
            }
        }
    }

    /// An argument of Go type `typ` (`None`: whatever it is).
    fn eval_arg(
        &mut self,
        dot: &Value<'a>,
        typ: Option<P>,
        node: &'a Node,
    ) -> Result<Value<'a>, String> {
        self.at = At::Node(node);
        let v = match node {
            Node::Dot { .. } => dot.clone(),
            Node::Nil { .. } => {
                return match typ {
                    None | Some(P::Any) => Ok(Value::Nil),
                    Some(t) => Err(self.errorf(format!("cannot assign nil to {}", t.go_name()))),
                };
            }
            Node::Field { idents, .. } => self.eval_field_chain(
                dot,
                dot.clone(),
                node,
                idents,
                std::slice::from_ref(node),
                None,
            )?,
            Node::Variable { .. } => self.eval_variable(dot, node, &[], None)?,
            Node::Pipe(p) => self.eval_pipeline(dot, p)?,
            Node::Identifier { func, .. } => self.eval_call(
                dot,
                Call {
                    func,
                    at: At::Node(node),
                    args: &[],
                    fin: None,
                    regex: None,
                    recv: None,
                },
            )?,
            Node::Chain { .. } => self.eval_chain(dot, node, &[], None)?,
            Node::Bool { val, .. } => match typ {
                None | Some(P::Any) => return Ok(Value::Bool(*val)),
                Some(t) => return Err(self.literal_mismatch(t, node)),
            },
            Node::Number { num, .. } => match typ {
                None | Some(P::Any) => return self.ideal_constant(node),
                Some(P::Int) => match num.int {
                    Some(i) => return Ok(Value::Int(i, IntTy::Int)),
                    None => return Err(self.literal_mismatch(P::Int, node)),
                },
                Some(P::Float) => match num.float {
                    Some(f) => return Ok(Value::Float(f)),
                    None => return Err(self.literal_mismatch(P::Float, node)),
                },
                Some(t) => return Err(self.literal_mismatch(t, node)),
            },
            Node::Str { text, .. } => match typ {
                None | Some(P::Any | P::Str) => return Ok(Value::Str(Cow::Borrowed(text))),
                Some(t) => return Err(self.literal_mismatch(t, node)),
            },
        };
        self.validate_type(v, typ)
    }

    fn literal_mismatch(&self, typ: P, node: &Node) -> String {
        let found = node.text();
        match typ {
            P::Str => self.errorf(format!("expected string; found {found}")),
            P::Int => self.errorf(format!("expected integer; found {found}")),
            P::Float => self.errorf(format!("expected float; found {found}")),
            P::Time | P::Samples | P::Sample | P::Any => self.errorf(format!(
                "can't handle {found} for arg of type {}",
                typ.go_name()
            )),
        }
    }

    /// Checks that a computed value can be passed as a `typ`.
    fn validate_type(&self, v: Value<'a>, typ: Option<P>) -> Result<Value<'a>, String> {
        let Some(typ) = typ else {
            return Ok(v);
        };
        let ok = match (&v, typ) {
            (Value::Nil, P::Any) => true,
            (Value::Nil, _) => {
                return Err(self.errorf(format!("invalid value; expected {}", typ.go_name())));
            }
            (Value::Labels, _) => {
                return Err(self.errorf(
                    "can't use the label map as a value; name a label instead, e.g. .app",
                ));
            }
            (_, P::Any) => true,
            (Value::Str(_), P::Str)
            | (Value::Int(_, IntTy::Int), P::Int)
            | (Value::Float(_), P::Float)
            | (Value::Time(_), P::Time)
            | (Value::Samples(_), P::Samples)
            | (Value::Sample(_), P::Sample) => true,
            _ => false,
        };
        if !ok {
            return Err(self.errorf(format!(
                "wrong type for value; expected {}; got {}",
                typ.go_name(),
                v.type_name()
            )));
        }
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------
// Functions: Go's builtins, Loki's own and the Sprig ones Loki takes.
// ---------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum F {
    // Go's builtins.
    And,
    Or,
    Not,
    Len,
    Print,
    Printf,
    Println,
    Html,
    Js,
    UrlQuery,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    // Loki's own.
    Line,
    Timestamp,
    ToLower,
    ToUpper,
    Replace,
    Trim,
    TrimLeft,
    TrimRight,
    TrimPrefix,
    TrimSuffix,
    TrimSpace,
    RegexReplaceAll,
    RegexReplaceAllLiteral,
    Count,
    UrlDecode,
    UrlEncode,
    Bytes,
    Duration,
    UnixEpochMillis,
    UnixEpochNanos,
    UnixToTime,
    AlignLeft,
    AlignRight,
    // Sprig's.
    B64Enc,
    B64Dec,
    Title,
    Trunc,
    Substr,
    Contains,
    HasPrefix,
    HasSuffix,
    Indent,
    Nindent,
    SprigReplace,
    Repeat,
    TrimAll,
    SprigTrimPrefix,
    SprigTrimSuffix,
    ToInt,
    ToFloat64,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Addf,
    Subf,
    Mulf,
    Divf,
    Max,
    Min,
    Maxf,
    Minf,
    Ceil,
    Floor,
    Round,
    Date,
    ToDate,
    Now,
    UnixEpoch,
    Default,
    // Prometheus's (and Go's `index`, which only that dialect offers).
    Index,
    Query,
    First,
    Label,
    SampleValue,
    StrValue,
    SortByLabel,
    Args,
    ReReplaceAll,
    SafeHtml,
    Match,
    GraphLink,
    TableLink,
    Humanize,
    Humanize1024,
    HumanizeDuration,
    HumanizePercentage,
    HumanizeTimestamp,
    ToTime,
    PathPrefix,
    ExternalUrl,
    StripPort,
    StripDomain,
    ParseDuration,
    // Methods of time.Time.
    TimeUnix,
    TimeUnixMilli,
    TimeUnixMicro,
    TimeUnixNano,
    TimeFormat,
    TimeUtc,
    TimeYear,
    TimeYearDay,
    TimeDay,
    TimeHour,
    TimeMinute,
    TimeSecond,
    TimeNanosecond,
    TimeIsZero,
    TimeString,
}

/// A function's name and Go signature: fixed parameters, then the type of the
/// variadic ones if it has them.
#[derive(Debug)]
struct Func {
    name: &'static str,
    id: F,
    params: &'static [P],
    variadic: Option<P>,
}

const fn func(name: &'static str, id: F, params: &'static [P], variadic: Option<P>) -> Func {
    Func {
        name,
        id,
        params,
        variadic,
    }
}

use P::{Any, Int as I, Str as S};

/// Go's builtin functions, which every dialect has.
static BUILTINS: &[Func] = &[
    func("and", F::And, &[Any], Some(Any)),
    func("or", F::Or, &[Any], Some(Any)),
    func("not", F::Not, &[Any], None),
    func("len", F::Len, &[Any], None),
    func("print", F::Print, &[], Some(Any)),
    func("printf", F::Printf, &[S], Some(Any)),
    func("println", F::Println, &[], Some(Any)),
    func("html", F::Html, &[], Some(Any)),
    func("js", F::Js, &[], Some(Any)),
    func("urlquery", F::UrlQuery, &[], Some(Any)),
    func("eq", F::Eq, &[Any], Some(Any)),
    func("ne", F::Ne, &[Any, Any], None),
    func("lt", F::Lt, &[Any, Any], None),
    func("le", F::Le, &[Any, Any], None),
    func("gt", F::Gt, &[Any, Any], None),
    func("ge", F::Ge, &[Any, Any], None),
];

/// Loki's template functions and the Sprig ones it takes.
static LOKI_FUNCS: &[Func] = &[
    func("__line__", F::Line, &[], None),
    func("__timestamp__", F::Timestamp, &[], None),
    func("ToLower", F::ToLower, &[S], None),
    func("ToUpper", F::ToUpper, &[S], None),
    func("Replace", F::Replace, &[S, S, S, I], None),
    func("Trim", F::Trim, &[S, S], None),
    func("TrimLeft", F::TrimLeft, &[S, S], None),
    func("TrimRight", F::TrimRight, &[S, S], None),
    func("TrimPrefix", F::TrimPrefix, &[S, S], None),
    func("TrimSuffix", F::TrimSuffix, &[S, S], None),
    func("TrimSpace", F::TrimSpace, &[S], None),
    func("regexReplaceAll", F::RegexReplaceAll, &[S, S, S], None),
    func(
        "regexReplaceAllLiteral",
        F::RegexReplaceAllLiteral,
        &[S, S, S],
        None,
    ),
    func("count", F::Count, &[S, S], None),
    func("urldecode", F::UrlDecode, &[S], None),
    func("urlencode", F::UrlEncode, &[S], None),
    func("bytes", F::Bytes, &[S], None),
    func("duration", F::Duration, &[S], None),
    func("duration_seconds", F::Duration, &[S], None),
    func("unixEpochMillis", F::UnixEpochMillis, &[P::Time], None),
    func("unixEpochNanos", F::UnixEpochNanos, &[P::Time], None),
    func("unixToTime", F::UnixToTime, &[S], None),
    func("alignLeft", F::AlignLeft, &[I, S], None),
    func("alignRight", F::AlignRight, &[I, S], None),
    func("b64enc", F::B64Enc, &[S], None),
    func("b64dec", F::B64Dec, &[S], None),
    func("lower", F::ToLower, &[S], None),
    func("upper", F::ToUpper, &[S], None),
    func("title", F::Title, &[S], None),
    func("Title", F::Title, &[S], None),
    func("trunc", F::Trunc, &[I, S], None),
    func("substr", F::Substr, &[I, I, S], None),
    func("contains", F::Contains, &[S, S], None),
    func("hasPrefix", F::HasPrefix, &[S, S], None),
    func("hasSuffix", F::HasSuffix, &[S, S], None),
    func("indent", F::Indent, &[I, S], None),
    func("nindent", F::Nindent, &[I, S], None),
    func("replace", F::SprigReplace, &[S, S, S], None),
    func("repeat", F::Repeat, &[I, S], None),
    func("trim", F::TrimSpace, &[S], None),
    func("trimAll", F::TrimAll, &[S, S], None),
    func("trimPrefix", F::SprigTrimPrefix, &[S, S], None),
    func("trimSuffix", F::SprigTrimSuffix, &[S, S], None),
    func("int", F::ToInt, &[Any], None),
    func("float64", F::ToFloat64, &[Any], None),
    func("add", F::Add, &[], Some(Any)),
    func("sub", F::Sub, &[Any, Any], None),
    func("mul", F::Mul, &[Any], Some(Any)),
    func("div", F::Div, &[Any, Any], None),
    func("mod", F::Mod, &[Any, Any], None),
    func("addf", F::Addf, &[], Some(Any)),
    func("subf", F::Subf, &[Any], Some(Any)),
    func("mulf", F::Mulf, &[Any], Some(Any)),
    func("divf", F::Divf, &[Any], Some(Any)),
    func("max", F::Max, &[Any], Some(Any)),
    func("min", F::Min, &[Any], Some(Any)),
    func("maxf", F::Maxf, &[Any], Some(Any)),
    func("minf", F::Minf, &[Any], Some(Any)),
    func("ceil", F::Ceil, &[Any], None),
    func("floor", F::Floor, &[Any], None),
    func("round", F::Round, &[Any, I], Some(P::Float)),
    func("date", F::Date, &[S, Any], None),
    func("toDate", F::ToDate, &[S, S], None),
    func("now", F::Now, &[], None),
    func("unixEpoch", F::UnixEpoch, &[P::Time], None),
    func("default", F::Default, &[Any], Some(Any)),
];

/// Prometheus's template functions (`template.NewTemplateExpander`), and Go's
/// `index`, which LogQL templates do not have.
static PROMETHEUS_FUNCS: &[Func] = &[
    func("index", F::Index, &[Any], Some(Any)),
    func("query", F::Query, &[S], None),
    func("first", F::First, &[P::Samples], None),
    func("label", F::Label, &[S, P::Sample], None),
    func("value", F::SampleValue, &[P::Sample], None),
    func("strvalue", F::StrValue, &[P::Sample], None),
    func("sortByLabel", F::SortByLabel, &[S, P::Samples], None),
    func("args", F::Args, &[], Some(Any)),
    func("reReplaceAll", F::ReReplaceAll, &[S, S, S], None),
    func("safeHtml", F::SafeHtml, &[S], None),
    func("match", F::Match, &[S, S], None),
    func("title", F::Title, &[S], None),
    func("toUpper", F::ToUpper, &[S], None),
    func("toLower", F::ToLower, &[S], None),
    func("graphLink", F::GraphLink, &[S], None),
    func("tableLink", F::TableLink, &[S], None),
    func("humanize", F::Humanize, &[Any], None),
    func("humanize1024", F::Humanize1024, &[Any], None),
    func("humanizeDuration", F::HumanizeDuration, &[Any], None),
    func("humanizePercentage", F::HumanizePercentage, &[Any], None),
    func("humanizeTimestamp", F::HumanizeTimestamp, &[Any], None),
    func("toTime", F::ToTime, &[Any], None),
    func("pathPrefix", F::PathPrefix, &[], None),
    func("externalURL", F::ExternalUrl, &[], None),
    func("stripPort", F::StripPort, &[S], None),
    func("stripDomain", F::StripDomain, &[S], None),
    func("parseDuration", F::ParseDuration, &[S], None),
];

/// The methods of a `time.Time` (`__timestamp__.Unix`, `(now).Format "…"`) that a
/// template can call.
static TIME_METHODS: &[Func] = &[
    func("Unix", F::TimeUnix, &[], None),
    func("UnixMilli", F::TimeUnixMilli, &[], None),
    func("UnixMicro", F::TimeUnixMicro, &[], None),
    func("UnixNano", F::TimeUnixNano, &[], None),
    func("Format", F::TimeFormat, &[S], None),
    func("UTC", F::TimeUtc, &[], None),
    func("Local", F::TimeUtc, &[], None),
    func("Year", F::TimeYear, &[], None),
    func("YearDay", F::TimeYearDay, &[], None),
    func("Day", F::TimeDay, &[], None),
    func("Hour", F::TimeHour, &[], None),
    func("Minute", F::TimeMinute, &[], None),
    func("Second", F::TimeSecond, &[], None),
    func("Nanosecond", F::TimeNanosecond, &[], None),
    func("IsZero", F::TimeIsZero, &[], None),
    func("String", F::TimeString, &[], None),
];

fn lookup_func(dialect: Dialect, name: &str) -> Option<&'static Func> {
    BUILTINS
        .iter()
        .chain(dialect.functions())
        .find(|f| f.name == name)
}

fn arg_str<'v>(a: &'v [Value], i: usize) -> &'v str {
    match a.get(i) {
        Some(Value::Str(s)) => s,
        _ => "",
    }
}

fn arg_int(a: &[Value], i: usize) -> i64 {
    match a.get(i) {
        Some(Value::Int(n, _)) => *n,
        _ => 0,
    }
}

fn arg_time(a: &[Value], i: usize) -> Time {
    match a.get(i) {
        Some(Value::Time(t)) => *t,
        _ => Time::ZERO,
    }
}

fn arg<'v, 'a>(a: &'v [Value<'a>], i: usize) -> &'v Value<'a> {
    a.get(i).unwrap_or(&Value::Nil)
}

/// Sprig's `toInt64` (spf13/cast): numbers truncate, strings parse as Go integer
/// literals (`1.0` as 1), anything unparsable is 0.
fn to_int64(v: &Value) -> i64 {
    match v {
        Value::Int(n, _) => *n,
        Value::Float(f) => *f as i64,
        Value::Str(s) => parse_go_int(trim_zero_decimal(s)).unwrap_or(0),
        Value::Bool(b) => i64::from(*b),
        _ => 0,
    }
}

/// cast's `trimZeroDecimal`: `"1.000"` is `"1"`, other strings stay as they are.
fn trim_zero_decimal(s: &str) -> &str {
    let mut found_zero = false;
    for (i, c) in s.char_indices().rev() {
        match c {
            '.' if found_zero => return &s[..i],
            '.' => return s,
            '0' => found_zero = true,
            _ => return s,
        }
    }
    s
}

/// Sprig's `toFloat64`: strings parse as Go floats, anything unparsable is 0.
fn to_float64(v: &Value) -> f64 {
    match v {
        Value::Int(n, _) => *n as f64,
        Value::Float(f) => *f,
        Value::Str(s) => parse_go_float(s).unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => 0.0,
    }
}

fn check_built(len: usize) -> Result<(), String> {
    if len > MAX_BUILT {
        return Err(format!(
            "the result would be {len} bytes, more than the {MAX_BUILT} a template may build"
        ));
    }
    Ok(())
}

/// Go's `strings.Repeat`.
fn go_repeat(s: &str, count: i64) -> Result<String, String> {
    let Ok(count) = usize::try_from(count) else {
        return Err("strings: negative Repeat count".to_string());
    };
    check_built(s.len().saturating_mul(count))?;
    Ok(s.repeat(count))
}

impl<'a> State<'a> {
    /// Runs a function on its evaluated arguments; an `Err` is the function's own
    /// error, which the caller wraps as `error calling NAME: …`.
    fn call(
        &self,
        func: &Func,
        a: Vec<Value<'a>>,
        regex: Option<&Result<Regex, String>>,
    ) -> Result<Value<'a>, String> {
        let s = |i| arg_str(&a, i);
        Ok(match func.id {
            F::And | F::Or => Value::Nil,
            F::Not => Value::Bool(!truth(arg(&a, 0))),
            F::Len => match arg(&a, 0) {
                Value::Str(s) => int(s.len()),
                Value::StrMap(m) => int(m.len()),
                Value::AnyMap(m) => int(m.len()),
                Value::Samples(v) => int(v.len()),
                Value::Nil => return Err("len of nil pointer".to_string()),
                v => return Err(format!("len of type {}", v.type_name())),
            },
            F::Print => string(sprint(&a)),
            F::Println => string(sprintln(&a)),
            F::Printf => string(sprintf(s(0), a.get(1..).unwrap_or(&[]))),
            F::Html => string(html_escape(&eval_args(&a))),
            F::Js => string(js_escape(&eval_args(&a))),
            F::UrlQuery => string(query_escape(&eval_args(&a))),
            F::Eq => Value::Bool(go_eq(arg(&a, 0), a.get(1..).unwrap_or(&[]))?),
            F::Ne => Value::Bool(!go_eq(arg(&a, 0), a.get(1..).unwrap_or(&[]))?),
            F::Lt => Value::Bool(go_lt(arg(&a, 0), arg(&a, 1))?),
            F::Le => Value::Bool(go_le(arg(&a, 0), arg(&a, 1))?),
            F::Gt => Value::Bool(!go_le(arg(&a, 0), arg(&a, 1))?),
            F::Ge => Value::Bool(!go_lt(arg(&a, 0), arg(&a, 1))?),
            F::Line => Value::Str(Cow::Borrowed(self.line)),
            F::Timestamp => Value::Time(self.ts),
            F::ToLower => string(go_lower(s(0))),
            F::ToUpper => string(go_upper(s(0))),
            F::Title => string(go_title(s(0))),
            F::Replace => string(go_replace(s(0), s(1), s(2), arg_int(&a, 3))),
            F::SprigReplace => string(go_replace(s(2), s(0), s(1), -1)),
            F::Trim => string(go_trim(s(0), s(1), true, true)),
            F::TrimLeft => string(go_trim(s(0), s(1), true, false)),
            F::TrimRight => string(go_trim(s(0), s(1), false, true)),
            F::TrimAll => string(go_trim(s(1), s(0), true, true)),
            F::TrimPrefix => string(s(0).strip_prefix(s(1)).unwrap_or(s(0)).to_string()),
            F::TrimSuffix => string(s(0).strip_suffix(s(1)).unwrap_or(s(0)).to_string()),
            F::SprigTrimPrefix => string(s(1).strip_prefix(s(0)).unwrap_or(s(1)).to_string()),
            F::SprigTrimSuffix => string(s(1).strip_suffix(s(0)).unwrap_or(s(1)).to_string()),
            F::TrimSpace => string(s(0).trim().to_string()),
            F::RegexReplaceAll | F::RegexReplaceAllLiteral | F::Count => {
                let compiled;
                let re = match regex {
                    Some(Ok(re)) => re,
                    Some(Err(e)) => return Err(e.clone()),
                    None => {
                        compiled = go_regex(s(0))?;
                        &compiled
                    }
                };
                match func.id {
                    F::RegexReplaceAll => string(re.replace_all(s(1), s(2)).into_owned()),
                    F::RegexReplaceAllLiteral => {
                        string(re.replace_all(s(1), regex::NoExpand(s(2))).into_owned())
                    }
                    _ => int(re.find_iter(s(1)).count()),
                }
            }
            F::UrlDecode => string(query_unescape(s(0))?),
            F::UrlEncode => string(query_escape(s(0))),
            F::Bytes => Value::Float(crate::gostrconv::parse_humanize_bytes(s(0))? as f64),
            F::Duration => Value::Float(crate::gostrconv::duration_seconds(
                crate::gostrconv::parse_duration(s(0))?,
            )),
            F::UnixEpochMillis => string(arg_time(&a, 0).unix_milli().to_string()),
            F::UnixEpochNanos => string(arg_time(&a, 0).unix_nano().to_string()),
            F::UnixToTime => Value::Time(unix_to_time(s(0))?),
            F::AlignLeft | F::AlignRight => {
                string(align(s(1), arg_int(&a, 0), func.id == F::AlignLeft)?)
            }
            F::B64Enc => string(base64::engine::general_purpose::STANDARD.encode(s(0))),
            F::B64Dec => string(b64_decode(s(0))),
            F::Trunc => string(trunc(s(1), arg_int(&a, 0))),
            F::Substr => string(substr(s(2), arg_int(&a, 0), arg_int(&a, 1))),
            F::Contains => Value::Bool(s(1).contains(s(0))),
            F::HasPrefix => Value::Bool(s(1).starts_with(s(0))),
            F::HasSuffix => Value::Bool(s(1).ends_with(s(0))),
            F::Indent | F::Nindent => {
                let pad = go_repeat(" ", arg_int(&a, 0))?;
                let lines = s(1).matches('\n').count() + 1;
                check_built(s(1).len().saturating_add(pad.len().saturating_mul(lines)))?;
                let body = s(1).replace('\n', &format!("\n{pad}"));
                let nl = if func.id == F::Nindent { "\n" } else { "" };
                string(format!("{nl}{pad}{body}"))
            }
            F::Repeat => string(go_repeat(s(1), arg_int(&a, 0))?),
            F::ToInt => Value::Int(to_int64(arg(&a, 0)), IntTy::Int),
            F::ToFloat64 => Value::Float(to_float64(arg(&a, 0))),
            F::Add => Value::Int(
                a.iter().fold(0i64, |acc, v| acc.wrapping_add(to_int64(v))),
                IntTy::Int64,
            ),
            F::Sub => Value::Int(
                to_int64(arg(&a, 0)).wrapping_sub(to_int64(arg(&a, 1))),
                IntTy::Int64,
            ),
            F::Mul => Value::Int(
                a.iter()
                    .skip(1)
                    .fold(to_int64(arg(&a, 0)), |acc, v| acc.wrapping_mul(to_int64(v))),
                IntTy::Int64,
            ),
            F::Div | F::Mod => {
                let (x, y) = (to_int64(arg(&a, 0)), to_int64(arg(&a, 1)));
                if y == 0 {
                    return Err("runtime error: integer divide by zero".to_string());
                }
                let v = if func.id == F::Div {
                    x.wrapping_div(y)
                } else {
                    x.wrapping_rem(y)
                };
                Value::Int(v, IntTy::Int64)
            }
            F::Addf => Value::Float(decimal_fold(0.0, &a, DecOp::Add)?),
            F::Subf | F::Mulf | F::Divf => {
                let op = match func.id {
                    F::Subf => DecOp::Sub,
                    F::Mulf => DecOp::Mul,
                    _ => DecOp::Div,
                };
                let first = to_float64(arg(&a, 0));
                Value::Float(decimal_fold(first, a.get(1..).unwrap_or(&[]), op)?)
            }
            F::Max | F::Min => {
                let first = to_int64(arg(&a, 0));
                let max = func.id == F::Max;
                let v = a
                    .iter()
                    .skip(1)
                    .map(to_int64)
                    .fold(first, |acc, v| if max { acc.max(v) } else { acc.min(v) });
                Value::Int(v, IntTy::Int64)
            }
            F::Maxf | F::Minf => {
                let first = to_float64(arg(&a, 0));
                let max = func.id == F::Maxf;
                let v = a.iter().skip(1).map(to_float64).fold(first, |acc, v| {
                    if max { go_max(acc, v) } else { go_min(acc, v) }
                });
                Value::Float(v)
            }
            F::Ceil => Value::Float(to_float64(arg(&a, 0)).ceil()),
            F::Floor => Value::Float(to_float64(arg(&a, 0)).floor()),
            F::Round => {
                let round_on = match a.get(2) {
                    Some(Value::Float(f)) => *f,
                    _ => 0.5,
                };
                Value::Float(sprig_round(
                    to_float64(arg(&a, 0)),
                    arg_int(&a, 1),
                    round_on,
                ))
            }
            F::Date => {
                let t = match arg(&a, 1) {
                    Value::Time(t) => *t,
                    Value::Int(n, _) => Time::unix(*n, 0),
                    _ => Time::now(),
                };
                string(format_time(t, s(0)))
            }
            F::ToDate => Value::Time(parse_time(s(0), s(1)).unwrap_or(Time::ZERO)),
            F::Now => Value::Time(Time::now()),
            F::UnixEpoch => string(arg_time(&a, 0).secs.to_string()),
            F::Default => {
                let mut it = a.into_iter();
                let default = it.next().unwrap_or(Value::Nil);
                match it.next() {
                    Some(given) if truth(&given) => given,
                    _ => default,
                }
            }
            F::Index => index(arg(&a, 0), a.get(1..).unwrap_or(&[]))?,
            F::ReReplaceAll | F::Match => {
                let compiled;
                let re = match regex {
                    Some(Ok(re)) => re,
                    Some(Err(e)) => return Err(e.clone()),
                    None => {
                        compiled = go_regex(s(0))?;
                        &compiled
                    }
                };
                if func.id == F::Match {
                    Value::Bool(re.is_match(s(1)))
                } else {
                    string(re.replace_all(s(2), s(1)).into_owned())
                }
            }
            F::Query
            | F::First
            | F::Label
            | F::SampleValue
            | F::StrValue
            | F::SortByLabel
            | F::Args
            | F::SafeHtml
            | F::GraphLink
            | F::TableLink
            | F::Humanize
            | F::Humanize1024
            | F::HumanizeDuration
            | F::HumanizePercentage
            | F::HumanizeTimestamp
            | F::ToTime
            | F::PathPrefix
            | F::ExternalUrl
            | F::StripPort
            | F::StripDomain
            | F::ParseDuration => prometheus::call(func.id, a, self.env)?,
            F::TimeUnix => Value::Int(arg_time(&a, 0).secs, IntTy::Int64),
            F::TimeUnixMilli => Value::Int(arg_time(&a, 0).unix_milli(), IntTy::Int64),
            F::TimeUnixMicro => Value::Int(arg_time(&a, 0).unix_micro(), IntTy::Int64),
            F::TimeUnixNano => Value::Int(arg_time(&a, 0).unix_nano(), IntTy::Int64),
            F::TimeFormat => string(format_time(arg_time(&a, 0), s(1))),
            F::TimeUtc => Value::Time(arg_time(&a, 0)),
            F::TimeYear
            | F::TimeYearDay
            | F::TimeDay
            | F::TimeHour
            | F::TimeMinute
            | F::TimeSecond
            | F::TimeNanosecond => {
                let c = civil(arg_time(&a, 0));
                let v = match func.id {
                    F::TimeYear => c.year,
                    F::TimeYearDay => i64::from(c.yday),
                    F::TimeDay => i64::from(c.day),
                    F::TimeHour => i64::from(c.hour),
                    F::TimeMinute => i64::from(c.min),
                    F::TimeSecond => i64::from(c.sec),
                    _ => i64::from(c.nanos),
                };
                Value::Int(v, IntTy::Int)
            }
            F::TimeIsZero => Value::Bool(arg_time(&a, 0) == Time::ZERO),
            F::TimeString => string(arg_time(&a, 0).to_go_string()),
        })
    }
}

/// The text `html`, `js` and `urlquery` work on: a lone string as it is, anything
/// else as `print` prints it.
fn eval_args(a: &[Value]) -> String {
    match a {
        [Value::Str(s)] => s.to_string(),
        _ => sprint(a),
    }
}

/// Go's `index`: a map by key (missing keys give the zero value), a list by position.
fn index<'a>(item: &Value<'a>, keys: &[Value<'a>]) -> Result<Value<'a>, String> {
    let mut item = item.clone();
    for key in keys {
        item = match (&item, key) {
            (Value::Nil, _) => return Err("index of untyped nil".to_string()),
            (Value::StrMap(m), Value::Str(k)) => {
                string(m.get(k.as_ref()).cloned().unwrap_or_default())
            }
            (Value::AnyMap(m), Value::Str(k)) => m.get(k.as_ref()).cloned().unwrap_or(Value::Nil),
            (Value::StrMap(_) | Value::AnyMap(_), k) => {
                return Err(format!(
                    "value has type {}; should be string",
                    k.type_name()
                ));
            }
            (Value::Samples(list), Value::Int(i, _)) => {
                match usize::try_from(*i).ok().and_then(|i| list.get(i)) {
                    Some(s) => Value::Sample(Rc::clone(s)),
                    None => return Err(format!("index out of range: {i}")),
                }
            }
            (Value::Samples(_), k) => {
                return Err(format!(
                    "cannot index slice/array with type {}",
                    k.type_name()
                ));
            }
            (v, _) => return Err(format!("can't index item of type {}", v.type_name())),
        };
    }
    Ok(item)
}

/// Go's comparison kinds: values of different kinds cannot be compared.
#[derive(PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    Str,
    /// Neither a basic kind nor comparable by `lt` (a time, nil).
    Other,
}

fn kind(v: &Value) -> Kind {
    match v {
        Value::Bool(_) => Kind::Bool,
        Value::Int(..) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::Str(_) => Kind::Str,
        _ => Kind::Other,
    }
}

const INCOMPATIBLE: &str = "incompatible types for comparison";
const INVALID_TYPE: &str = "invalid type for comparison";

/// Go's `eq`: whether `a` equals any of `others`.
fn go_eq(a: &Value, others: &[Value]) -> Result<bool, String> {
    if others.is_empty() {
        return Err("missing argument for comparison".to_string());
    }
    let k1 = kind(a);
    for b in others {
        let k2 = kind(b);
        let equal = if k1 != k2 {
            if !matches!(a, Value::Nil) && !matches!(b, Value::Nil) {
                return Err(INCOMPATIBLE.to_string());
            }
            false
        } else {
            match (a, b) {
                (Value::Bool(x), Value::Bool(y)) => x == y,
                (Value::Int(x, _), Value::Int(y, _)) => x == y,
                (Value::Float(x), Value::Float(y)) => x == y,
                (Value::Str(x), Value::Str(y)) => x == y,
                (Value::Time(x), Value::Time(y)) => x == y,
                (Value::Nil, Value::Nil) => true,
                _ => false,
            }
        };
        if equal {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Go's `lt`: numbers with numbers of their kind, strings with strings.
fn go_lt(a: &Value, b: &Value) -> Result<bool, String> {
    let (k1, k2) = (kind(a), kind(b));
    if k1 == Kind::Other || k2 == Kind::Other {
        return Err(INVALID_TYPE.to_string());
    }
    if k1 != k2 {
        return Err(INCOMPATIBLE.to_string());
    }
    match (a, b) {
        (Value::Int(x, _), Value::Int(y, _)) => Ok(x < y),
        (Value::Float(x), Value::Float(y)) => Ok(x < y),
        (Value::Str(x), Value::Str(y)) => Ok(x < y),
        _ => Err(INVALID_TYPE.to_string()),
    }
}

fn go_le(a: &Value, b: &Value) -> Result<bool, String> {
    if go_lt(a, b)? {
        return Ok(true);
    }
    go_eq(a, std::slice::from_ref(b))
}

/// Go's `math.Max`: NaN wins, then +Inf, and +0 over -0.
fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() { y } else { x }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`: NaN wins, then -Inf, and -0 over +0.
fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() { x } else { y }
    } else if x < y {
        x
    } else {
        y
    }
}

/// Sprig's `round`: up when the fraction at `places` reaches `round_on`.
fn sprig_round(val: f64, places: i64, round_on: f64) -> f64 {
    let pow = 10f64.powf(places as f64);
    let digit = pow * val;
    let r = if digit.fract() >= round_on {
        digit.ceil()
    } else {
        digit.floor()
    };
    r / pow
}

/// Go's `strings.ToLower`, one character for one (Unicode's simple mappings).
fn go_lower(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut l = c.to_lowercase();
            match (l.next(), l.next()) {
                (Some(x), None) => x,
                // Only U+0130 lowers to two characters; its simple mapping is 'i'.
                (Some(x), Some(_)) if c == '\u{130}' => x,
                _ => c,
            }
        })
        .collect()
}

/// Go's `strings.ToUpper`: a character without a one-character upper case (ß)
/// stays as it is.
fn go_upper(s: &str) -> String {
    s.chars().map(upper_char).collect()
}

fn upper_char(c: char) -> char {
    let mut u = c.to_uppercase();
    match (u.next(), u.next()) {
        (Some(x), None) => x,
        _ => c,
    }
}

/// Go's (deprecated) `strings.Title`: upper-cases the first letter of each word.
fn go_title(s: &str) -> String {
    let mut prev = ' ';
    s.chars()
        .map(|c| {
            let sep = if prev.is_ascii() {
                !(prev.is_ascii_alphanumeric() || prev == '_')
            } else if prev.is_alphanumeric() {
                false
            } else {
                prev.is_whitespace()
            };
            prev = c;
            if sep { upper_char(c) } else { c }
        })
        .collect()
}

/// Go's `strings.Replace`: the first `n` of `old` (all when `n < 0`); an empty
/// `old` matches before each character and at the end.
fn go_replace(s: &str, old: &str, new: &str, n: i64) -> String {
    match usize::try_from(n) {
        Ok(n) => s.replacen(old, new, n),
        Err(_) => s.replace(old, new),
    }
}

/// Go's `strings.Trim`, `TrimLeft` and `TrimRight`: `cutset` is a set of characters.
fn go_trim(s: &str, cutset: &str, left: bool, right: bool) -> String {
    let cut = |c: char| cutset.contains(c);
    let mut t = s;
    if left {
        t = t.trim_start_matches(cut);
    }
    if right {
        t = t.trim_end_matches(cut);
    }
    t.to_string()
}

/// Loki's `trunc`: the first `n` characters, or the last `-n` when `n < 0`.
fn trunc(s: &str, n: i64) -> String {
    let chars: Vec<char> = s.chars().collect();
    let len = chars.len() as i64;
    if n < 0 && len + n > 0 {
        return chars[(len + n) as usize..].iter().collect();
    }
    if n >= 0 && len > n {
        return chars[..n as usize].iter().collect();
    }
    s.to_string()
}

/// Loki's `substr`: characters `start..end`, clamped; a negative start means from
/// the beginning, a negative end to the end.
fn substr(s: &str, start: i64, end: i64) -> String {
    let chars: Vec<char> = s.chars().collect();
    let len = chars.len() as i64;
    let end = end.min(len);
    let start = start.min(len);
    let (from, to) = if start < 0 {
        if end < 0 {
            return String::new();
        }
        (0, end)
    } else if end < 0 {
        (start, len)
    } else if start > end {
        return String::new();
    } else {
        (start, end)
    };
    chars[from as usize..to as usize].iter().collect()
}

/// Loki's `alignLeft`/`alignRight`: pads with spaces or cuts to `count` characters.
fn align(s: &str, count: i64, left: bool) -> Result<String, String> {
    let len = s.chars().count() as i64;
    if count < 0 || count == len {
        return Ok(s.to_string());
    }
    if count > len {
        let pad = go_repeat(" ", count - len)?;
        return Ok(if left {
            format!("{s}{pad}")
        } else {
            format!("{pad}{s}")
        });
    }
    let chars = s.chars();
    Ok(if left {
        chars.take(count as usize).collect()
    } else {
        chars.skip((len - count) as usize).collect()
    })
}

/// Go's `base64.StdEncoding.DecodeString` as Sprig's `b64dec` uses it: on bad input
/// the result is the error's text.
fn b64_decode(s: &str) -> String {
    const ENGINE: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::general_purpose::PAD.with_decode_allow_trailing_bits(true),
    );
    // Go's decoder skips line breaks.
    let cleaned: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    match ENGINE.decode(cleaned.as_bytes()) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            let at = match e {
                base64::DecodeError::InvalidByte(at, _)
                | base64::DecodeError::InvalidLastSymbol(at, _) => at,
                base64::DecodeError::InvalidLength(len) => len - len % 4,
                base64::DecodeError::InvalidPadding => cleaned.find('=').unwrap_or(0),
            };
            format!("illegal base64 data at input byte {at}")
        }
    }
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Go's `url.QueryUnescape`.
fn query_unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |j: usize| b.get(j).and_then(|c| char::from(*c).to_digit(16));
                match (hex(i + 1), hex(i + 2)) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => {
                        let bad = String::from_utf8_lossy(&b[i..(i + 3).min(b.len())]);
                        return Err(format!("invalid URL escape {}", go_quote(&bad)));
                    }
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `template.HTMLEscapeString`.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\0' => out.push('\u{FFFD}'),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c if c.is_ascii() || is_print(c) => out.push(c),
            c => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
        }
    }
    out
}

/// A Go (RE2) regular expression on the `regex` crate: `\d`, `\w`, `\s` and `\b` are
/// ASCII in Go and Unicode in the crate, so they are rewritten to Go's meaning.
fn go_regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(&ascii_classes(pattern)).map_err(|e| {
        let msg = match &e {
            regex::Error::Syntax(s) => s
                .lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix("error: "))
                .unwrap_or("invalid syntax")
                .to_string(),
            regex::Error::CompiledTooBig(_) => "expression too large".to_string(),
            other => other.to_string(),
        };
        format!("error parsing regexp: {msg}: `{pattern}`")
    })
}

fn ascii_classes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    // Right after `[` or `[^`, where `]` is a literal.
    let mut class_start = false;
    while let Some(c) = chars.next() {
        let starting = class_start;
        class_start = false;
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let rewritten = match (in_class, e) {
                    (false, 'd') => Some("[0-9]"),
                    (false, 'D') => Some("[^0-9]"),
                    (false, 'w') => Some("[0-9A-Za-z_]"),
                    (false, 'W') => Some("[^0-9A-Za-z_]"),
                    (false, 's') => Some(r"[\t\n\f\r ]"),
                    (false, 'S') => Some(r"[^\t\n\f\r ]"),
                    (false, 'b') => Some(r"(?-u:\b)"),
                    (false, 'B') => Some(r"(?-u:\B)"),
                    (true, 'd') => Some("0-9"),
                    (true, 'w') => Some("0-9A-Za-z_"),
                    (true, 's') => Some(r"\t\n\f\r "),
                    (true, 'D') => Some("[:^digit:]"),
                    (true, 'W') => Some("[:^word:]"),
                    (true, 'S') => Some("[:^space:]"),
                    _ => None,
                };
                match rewritten {
                    Some(r) => out.push_str(r),
                    None => {
                        out.push('\\');
                        out.push(e);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
            }
            '[' if chars.peek() == Some(&':') => {
                // A named class such as [:alpha:], copied whole.
                out.push('[');
                let mut prev = '[';
                for d in chars.by_ref() {
                    out.push(d);
                    if prev == ':' && d == ']' {
                        break;
                    }
                    prev = d;
                }
            }
            ']' if in_class && !starting => {
                in_class = false;
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// Printing, as Go's fmt does it.
// ---------------------------------------------------------------------------------

/// A verb's flags, width and precision (`fmt.fmtFlags`).
#[derive(Clone, Copy, Default)]
struct Flags {
    wid: usize,
    prec: usize,
    wid_present: bool,
    prec_present: bool,
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    /// `%#v`: strings quoted.
    sharp_v: bool,
}

/// Go's limit on widths and precisions; beyond it the verb is malformed.
const TOO_LARGE: usize = 1_000_000;

/// `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    let mut prev_string = false;
    for (i, a) in args.iter().enumerate() {
        let is_string = matches!(a, Value::Str(_));
        if i > 0 && !is_string && !prev_string {
            out.push(' ');
        }
        print_arg(&mut out, &Flags::default(), a, 'v');
        prev_string = is_string;
    }
    out
}

/// `fmt.Sprintln`: spaces between all operands and a newline.
fn sprintln(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        print_arg(&mut out, &Flags::default(), a, 'v');
    }
    out.push('\n');
    out
}

/// Reads a decimal number at `i`: its value (`None` when too large), whether there
/// were digits, and where it ends.
fn parse_num(b: &[u8], mut i: usize) -> (Option<usize>, bool, usize) {
    let mut num = Some(0usize);
    let mut any = false;
    while i < b.len() && b[i].is_ascii_digit() {
        num = num.and_then(|n| {
            if n > TOO_LARGE {
                None
            } else {
                Some(n * 10 + usize::from(b[i] - b'0'))
            }
        });
        any = true;
        i += 1;
    }
    (num, any, i)
}

/// `fmt.Sprintf` over template values.
fn sprintf(format: &str, args: &[Value]) -> String {
    let b = format.as_bytes();
    let mut out = String::with_capacity(format.len() + 16);
    let mut argn = 0usize;
    let mut reordered = false;
    let mut i = 0;
    'verbs: while i < b.len() {
        let lit = i;
        while i < b.len() && b[i] != b'%' {
            i += 1;
        }
        out.push_str(&format[lit..i]);
        if i >= b.len() {
            break;
        }
        i += 1;
        let mut f = Flags::default();
        while i < b.len() {
            match b[i] {
                b'#' => f.sharp = true,
                b'0' => f.zero = !f.minus,
                b'+' => f.plus = true,
                b'-' => {
                    f.minus = true;
                    f.zero = false;
                }
                b' ' => f.space = true,
                _ => break,
            }
            i += 1;
        }
        let mut good_argn = true;
        // An explicit argument index, `[n]`.
        let mut arg_index = |i: &mut usize, argn: &mut usize, good: &mut bool| -> bool {
            if *i >= b.len() || b[*i] != b'[' {
                return false;
            }
            reordered = true;
            let close = b[*i..].iter().position(|&c| c == b']');
            let Some(close) = close.filter(|_| b.len() - *i >= 3) else {
                *good = false;
                *i += 1;
                return false;
            };
            let (n, any, end) = parse_num(b, *i + 1);
            let ok = any && end == *i + close;
            *i += close + 1;
            match n {
                Some(n) if ok && n >= 1 && n <= args.len() => {
                    *argn = n - 1;
                    true
                }
                _ => {
                    *good = false;
                    ok
                }
            }
        };
        let mut after_index = arg_index(&mut i, &mut argn, &mut good_argn);
        // Width.
        if i < b.len() && b[i] == b'*' {
            i += 1;
            match int_from_arg(args, &mut argn) {
                Some(w) => {
                    f.wid_present = true;
                    if w < 0 {
                        f.minus = true;
                        f.zero = false;
                    }
                    f.wid = w.unsigned_abs() as usize;
                }
                None => out.push_str("%!(BADWIDTH)"),
            }
            after_index = false;
        } else {
            let (n, any, end) = parse_num(b, i);
            match n {
                None => {
                    out.push_str("%!(NOVERB)");
                    break 'verbs;
                }
                Some(n) => {
                    f.wid = n;
                    f.wid_present = any;
                    i = end;
                }
            }
            if after_index && f.wid_present {
                good_argn = false;
            }
        }
        // Precision.
        if i + 1 < b.len() && b[i] == b'.' {
            i += 1;
            if after_index {
                good_argn = false;
            }
            after_index = arg_index(&mut i, &mut argn, &mut good_argn);
            if i < b.len() && b[i] == b'*' {
                i += 1;
                match int_from_arg(args, &mut argn) {
                    Some(p) if p >= 0 => {
                        f.prec = p as usize;
                        f.prec_present = true;
                    }
                    _ => out.push_str("%!(BADPREC)"),
                }
                after_index = false;
            } else {
                let (n, _, end) = parse_num(b, i);
                match n {
                    None => {
                        out.push_str("%!(NOVERB)");
                        break 'verbs;
                    }
                    Some(n) => {
                        f.prec = n;
                        f.prec_present = true;
                        i = end;
                    }
                }
            }
        }
        if !after_index {
            arg_index(&mut i, &mut argn, &mut good_argn);
        }
        let Some(verb) = format[i..].chars().next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += verb.len_utf8();
        match verb {
            '%' => out.push('%'),
            _ if !good_argn => {
                let _ = write!(out, "%!{verb}(BADINDEX)");
            }
            _ if argn >= args.len() => {
                let _ = write!(out, "%!{verb}(MISSING)");
            }
            _ => {
                if verb == 'v' {
                    f.sharp_v = f.sharp;
                    f.sharp = false;
                    f.plus = false;
                }
                print_arg(&mut out, &f, &args[argn], verb);
                argn += 1;
            }
        }
    }
    if !reordered && argn < args.len() {
        out.push_str("%!(EXTRA ");
        for (k, a) in args[argn..].iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            if let Value::Nil = a {
                out.push_str("<nil>");
            } else {
                out.push_str(a.type_name());
                out.push('=');
                print_arg(&mut out, &Flags::default(), a, 'v');
            }
        }
        out.push(')');
    }
    out
}

/// A `*` width or precision: the next argument, if an integer of sane size.
fn int_from_arg(args: &[Value], argn: &mut usize) -> Option<i64> {
    let v = args.get(*argn)?;
    *argn += 1;
    match v {
        Value::Int(n, _) if n.unsigned_abs() <= TOO_LARGE as u64 => Some(*n),
        _ => None,
    }
}

/// Prints one operand for one verb (`pp.printArg`).
fn print_arg(out: &mut String, f: &Flags, a: &Value, verb: char) {
    if verb == 'T' {
        pad_string(out, f, a.type_name());
        return;
    }
    match a {
        Value::Nil => match verb {
            'v' => pad_string(out, f, "<nil>"),
            _ => bad_verb(out, f, a, verb),
        },
        Value::Bool(v) => match verb {
            't' | 'v' => pad_string(out, f, if *v { "true" } else { "false" }),
            _ => bad_verb(out, f, a, verb),
        },
        Value::Int(n, _) => fmt_integer(out, f, *n, verb, a),
        Value::Float(x) => match verb {
            'v' => fmt_float(out, f, *x, 'g', -1),
            'g' | 'G' => fmt_float(out, f, *x, verb, -1),
            'e' | 'E' | 'f' => fmt_float(out, f, *x, verb, 6),
            'F' => fmt_float(out, f, *x, 'f', 6),
            _ => bad_verb(out, f, a, verb),
        },
        Value::Str(s) => fmt_string(out, f, s, verb, a),
        Value::Time(t) => fmt_string(out, f, &t.to_go_string(), verb, a),
        Value::Labels => pad_string(out, f, "map[…]"),
        Value::StrMap(_)
        | Value::AnyMap(_)
        | Value::Samples(_)
        | Value::Sample(_)
        | Value::AlertData(_) => match verb {
            'v' | 's' => {
                let mut shown = String::new();
                write_composite(&mut shown, a, verb);
                pad_string(out, f, &shown);
            }
            _ => bad_verb(out, f, a, verb),
        },
    }
}

/// A map, a sample or a list of them as Go's `fmt` prints them with `%v`: maps in key
/// order as `map[k:v …]`, structs as `{…}`. (Go prints the samples of a list as their
/// addresses; a template has no use for those, so they are printed as `&{…}` here.)
fn write_composite(out: &mut String, v: &Value, verb: char) {
    let plain = Flags::default();
    match v {
        Value::StrMap(m) => {
            out.push_str("map[");
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                out.push_str(v);
            }
            out.push(']');
        }
        Value::AnyMap(m) => {
            out.push_str("map[");
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                print_arg(out, &plain, v, verb);
            }
            out.push(']');
        }
        Value::Sample(s) => {
            out.push_str("&{");
            write_composite(out, &Value::StrMap(Rc::clone(&s.labels)), verb);
            out.push(' ');
            print_arg(out, &plain, &Value::Float(s.value), verb);
            out.push('}');
        }
        Value::Samples(list) => {
            out.push('[');
            for (i, s) in list.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_composite(out, &Value::Sample(Rc::clone(s)), verb);
            }
            out.push(']');
        }
        Value::AlertData(d) => {
            out.push('{');
            write_composite(out, &Value::StrMap(Rc::clone(&d.labels)), verb);
            out.push(' ');
            write_composite(out, &Value::StrMap(Rc::clone(&d.external_labels)), verb);
            out.push(' ');
            out.push_str(&d.external_url);
            out.push(' ');
            print_arg(out, &plain, &Value::Float(d.value), verb);
            out.push('}');
        }
        other => print_arg(out, &plain, other, verb),
    }
}

fn fmt_string(out: &mut String, f: &Flags, s: &str, verb: char, a: &Value) {
    match verb {
        'v' if f.sharp_v => fmt_q(out, f, s),
        'v' | 's' => pad_string(out, f, truncate(f, s)),
        'x' | 'X' => fmt_sx(out, f, s, verb == 'X'),
        'q' => fmt_q(out, f, s),
        _ => bad_verb(out, f, a, verb),
    }
}

/// `%!d(string=abc)`: a verb that does not fit its operand.
fn bad_verb(out: &mut String, f: &Flags, a: &Value, verb: char) {
    out.push_str("%!");
    out.push(verb);
    out.push('(');
    if let Value::Nil = a {
        out.push_str("<nil>");
    } else {
        out.push_str(a.type_name());
        out.push('=');
        print_arg(out, f, a, 'v');
    }
    out.push(')');
}

/// The first `prec` characters when a precision is given.
fn truncate<'s>(f: &Flags, s: &'s str) -> &'s str {
    if f.prec_present {
        if let Some((i, _)) = s.char_indices().nth(f.prec) {
            return &s[..i];
        }
    }
    s
}

fn write_padding(out: &mut String, n: usize, zero: bool) {
    let c = if zero { '0' } else { ' ' };
    out.extend(std::iter::repeat_n(c, n));
}

/// Pads to the width, on the left unless `-` (with zeros when `0`).
fn pad_string(out: &mut String, f: &Flags, s: &str) {
    if !f.wid_present || f.wid == 0 {
        out.push_str(s);
        return;
    }
    let width = f.wid.saturating_sub(s.chars().count());
    if f.minus {
        out.push_str(s);
        write_padding(out, width, false);
    } else {
        write_padding(out, width, f.zero);
        out.push_str(s);
    }
}

fn fmt_q(out: &mut String, f: &Flags, s: &str) {
    let s = truncate(f, s);
    if f.sharp && can_backquote(s) {
        pad_string(out, f, &format!("`{s}`"));
    } else {
        pad_string(out, f, &quote_with(s, '"', f.plus));
    }
}

/// `%x` of a string: its bytes in hex.
fn fmt_sx(out: &mut String, f: &Flags, s: &str, upper: bool) {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let x = if upper { 'X' } else { 'x' };
    let mut bytes = s.as_bytes();
    if f.prec_present && f.prec < bytes.len() {
        bytes = &bytes[..f.prec];
    }
    let mut enc = String::new();
    if bytes.is_empty() {
        if f.wid_present {
            write_padding(out, f.wid, f.zero && !f.minus);
        }
        return;
    }
    if f.sharp {
        enc.push('0');
        enc.push(x);
    }
    for (i, &c) in bytes.iter().enumerate() {
        if f.space && i > 0 {
            enc.push(' ');
            if f.sharp {
                enc.push('0');
                enc.push(x);
            }
        }
        enc.push(char::from(digits[usize::from(c >> 4)]));
        enc.push(char::from(digits[usize::from(c & 0xF)]));
    }
    let width = enc.len();
    if f.wid_present && f.wid > width && !f.minus {
        write_padding(out, f.wid - width, f.zero);
    }
    out.push_str(&enc);
    if f.wid_present && f.wid > width && f.minus {
        write_padding(out, f.wid - width, false);
    }
}

/// An integer for a verb (`pp.fmtInteger`).
fn fmt_integer(out: &mut String, f: &Flags, n: i64, verb: char, a: &Value) {
    match verb {
        'v' | 'd' => fmt_int_base(out, f, n, 10, verb, false),
        'b' => fmt_int_base(out, f, n, 2, verb, false),
        'o' | 'O' => fmt_int_base(out, f, n, 8, verb, false),
        'x' => fmt_int_base(out, f, n, 16, verb, false),
        'X' => fmt_int_base(out, f, n, 16, verb, true),
        'c' => {
            let c = u32::try_from(n)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or(char::REPLACEMENT_CHARACTER);
            pad_string(out, f, c.encode_utf8(&mut [0; 4]));
        }
        'q' => {
            let c = u32::try_from(n)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or(char::REPLACEMENT_CHARACTER);
            let quoted = quote_with(c.encode_utf8(&mut [0; 4]), '\'', f.plus);
            pad_string(out, f, &quoted);
        }
        'U' => {
            let prec = if f.prec_present && f.prec > 4 {
                f.prec
            } else {
                4
            };
            let mut s = format!("U+{:0prec$X}", n as u64);
            if f.sharp {
                if let Some(c) = u32::try_from(n).ok().and_then(char::from_u32) {
                    if is_print(c) {
                        let _ = write!(s, " '{c}'");
                    }
                }
            }
            let f = Flags { zero: false, ..*f };
            pad_string(out, &f, &s);
        }
        _ => bad_verb(out, f, a, verb),
    }
}

/// Go's `fmt.fmtInteger`: digits, then precision or zero padding, prefixes, sign.
fn fmt_int_base(out: &mut String, f: &Flags, n: i64, base: u64, verb: char, upper: bool) {
    let negative = n < 0;
    let mut u = n.unsigned_abs();
    let mut prec = 0usize;
    if f.prec_present {
        prec = f.prec;
        if prec == 0 && u == 0 {
            if f.wid_present {
                write_padding(out, f.wid, false);
            }
            return;
        }
    } else if f.zero && !f.minus && f.wid_present {
        prec = f.wid;
        if negative || f.plus || f.space {
            prec = prec.saturating_sub(1);
        }
    }
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut buf: Vec<u8> = Vec::with_capacity(24);
    loop {
        buf.push(digits[(u % base) as usize]);
        u /= base;
        if u == 0 {
            break;
        }
    }
    while buf.len() < prec {
        buf.push(b'0');
    }
    if f.sharp {
        match base {
            2 => buf.extend_from_slice(b"b0"),
            8 if buf.last() != Some(&b'0') => buf.push(b'0'),
            16 => buf.extend_from_slice(if upper { b"X0" } else { b"x0" }),
            _ => {}
        }
    }
    if verb == 'O' {
        buf.extend_from_slice(b"o0");
    }
    if negative {
        buf.push(b'-');
    } else if f.plus {
        buf.push(b'+');
    } else if f.space {
        buf.push(b' ');
    }
    buf.reverse();
    let s: String = buf.into_iter().map(char::from).collect();
    let f = Flags { zero: false, ..*f };
    pad_string(out, &f, &s);
}

/// A float for a verb (`fmt.fmtFloat`): `prec` -1 is the shortest that reads back.
fn fmt_float(out: &mut String, f: &Flags, v: f64, verb: char, prec: i64) {
    let prec = if f.prec_present { f.prec as i64 } else { prec };
    let formatted = format_float(v, verb, prec);
    let mut num = if formatted.starts_with(['-', '+']) {
        formatted
    } else {
        format!("+{formatted}")
    };
    if f.space && num.starts_with('+') && !f.plus {
        num.replace_range(..1, " ");
    }
    if num[1..].starts_with(['I', 'N']) {
        // Infinities and NaN are not padded with zeros.
        if num[1..].starts_with('N') && !f.space && !f.plus {
            num.remove(0);
        }
        pad_string(out, &Flags { zero: false, ..*f }, &num);
        return;
    }
    if f.plus || !num.starts_with('+') {
        if f.zero && !f.minus && f.wid_present && f.wid > num.len() {
            // The sign goes before the zeros.
            out.push_str(&num[..1]);
            write_padding(out, f.wid - num.len(), true);
            out.push_str(&num[1..]);
            return;
        }
        pad_string(out, f, &num);
        return;
    }
    pad_string(out, f, &num[1..]);
}

/// The decimal digits of a float and where the point goes: `0.d1d2… × 10^dp`.
struct Digits {
    d: Vec<u8>,
    dp: i64,
}

/// Digits from Rust's `{:e}` output (`d.ddde±x`), trailing zeros dropped.
fn digits_from_exp(s: &str) -> Digits {
    let (mant, exp) = s.split_once('e').unwrap_or((s, "0"));
    let mut d: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while d.last() == Some(&b'0') {
        d.pop();
    }
    if d.is_empty() {
        return Digits { d, dp: 0 };
    }
    let exp: i64 = exp.parse().unwrap_or(0);
    Digits { d, dp: exp + 1 }
}

/// Digits rounded to `places` after the point.
fn digits_fixed(v: f64, places: usize) -> Digits {
    let s = format!("{v:.places$}");
    let (int_part, frac) = s.split_once('.').unwrap_or((&s, ""));
    let mut d: Vec<u8> = int_part.bytes().chain(frac.bytes()).collect();
    let mut dp = int_part.len() as i64;
    let lead = d.iter().take_while(|&&c| c == b'0').count();
    d.drain(..lead);
    dp -= lead as i64;
    while d.last() == Some(&b'0') {
        d.pop();
    }
    if d.is_empty() {
        dp = 0;
    }
    Digits { d, dp }
}

/// Go's `strconv.FormatFloat(v, fmt, prec, 64)` for `e`, `E`, `f`, `g` and `G`.
fn format_float(v: f64, fmt: char, prec: i64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let neg = v.is_sign_negative();
    let a = v.abs();
    let shortest = prec < 0;
    let mut prec = prec;
    let digs = if shortest {
        let d = if a == 0.0 {
            Digits {
                d: Vec::new(),
                dp: 0,
            }
        } else {
            digits_from_exp(&format!("{a:e}"))
        };
        let nd = d.d.len() as i64;
        prec = match fmt {
            'e' | 'E' => (nd - 1).max(0),
            'f' => (nd - d.dp).max(0),
            _ => nd,
        };
        d
    } else {
        match fmt {
            'f' => digits_fixed(a, prec as usize),
            _ => {
                if matches!(fmt, 'g' | 'G') && prec == 0 {
                    prec = 1;
                }
                let sig = if matches!(fmt, 'e' | 'E') {
                    prec + 1
                } else {
                    prec
                };
                if a == 0.0 {
                    Digits {
                        d: Vec::new(),
                        dp: 0,
                    }
                } else {
                    digits_from_exp(&format!("{a:.*e}", (sig - 1).max(0) as usize))
                }
            }
        }
    };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    match fmt {
        'e' | 'E' => fmt_e(&mut out, &digs, prec, fmt),
        'f' => fmt_f(&mut out, &digs, prec),
        _ => {
            let nd = digs.d.len() as i64;
            let mut eprec = prec;
            if eprec > nd && nd >= digs.dp {
                eprec = nd;
            }
            // For the shortest digits Go decides as if the precision were 6.
            if shortest {
                eprec = 6;
            }
            let exp = digs.dp - 1;
            let e = if fmt == 'G' { 'E' } else { 'e' };
            if exp < -4 || exp >= eprec {
                fmt_e(&mut out, &digs, prec.min(nd) - 1, e);
            } else {
                let p = if prec > digs.dp { nd } else { prec };
                fmt_f(&mut out, &digs, (p - digs.dp).max(0));
            }
        }
    }
    out
}

/// `d.ddde±dd`.
fn fmt_e(out: &mut String, digs: &Digits, prec: i64, e: char) {
    out.push(digs.d.first().map_or('0', |&c| char::from(c)));
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            let c = digs.d.get(i as usize).copied().unwrap_or(b'0');
            out.push(char::from(c));
        }
    }
    out.push(e);
    let exp = if digs.d.is_empty() { 0 } else { digs.dp - 1 };
    out.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exp.unsigned_abs());
}

/// `ddd.ddd`.
fn fmt_f(out: &mut String, digs: &Digits, prec: i64) {
    if digs.dp > 0 {
        for i in 0..digs.dp {
            let c = digs.d.get(i as usize).copied().unwrap_or(b'0');
            out.push(char::from(c));
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            let j = digs.dp + i - 1;
            let c = usize::try_from(j)
                .ok()
                .and_then(|j| digs.d.get(j).copied())
                .unwrap_or(b'0');
            out.push(char::from(c));
        }
    }
}

// ---------------------------------------------------------------------------------
// Go's strconv: quoting and number syntax.
// ---------------------------------------------------------------------------------

/// Whether Go's `strconv.IsPrint` holds, near enough: letters, marks, numbers,
/// punctuation, symbols and the ASCII space, but no other spaces, no controls and no
/// format characters.
fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(u32::from(c),
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xFFFE | 0xFFFF
        | 0xE000..=0xF8FF | 0xE0001..=0xE007F | 0xF0000..=0x10FFFF)
}

/// `strconv.Quote`.
fn go_quote(s: &str) -> String {
    quote_with(s, '"', false)
}

/// `strconv.Quote` (or `QuoteToASCII`) with either quote.
fn quote_with(s: &str, quote: char, ascii_only: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        if c == quote || c == '\\' {
            out.push('\\');
            out.push(c);
            continue;
        }
        if is_print(c) && (!ascii_only || c.is_ascii()) {
            out.push(c);
            continue;
        }
        match c {
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if u32::from(c) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if u32::from(c) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push(quote);
    out
}

/// `strconv.CanBackquote`.
fn can_backquote(s: &str) -> bool {
    !s.chars()
        .any(|c| c == '`' || c == '\u{FEFF}' || (c.is_control() && c != '\t'))
}

/// `strconv.UnquoteChar`: the first character (or byte, for `\x` and octal escapes)
/// of a quoted literal's body, whether it is a whole character, and the rest.
fn unquote_char(s: &str, quote: char) -> Result<(u32, bool, &str), ()> {
    let mut chars = s.chars();
    let c = chars.next().ok_or(())?;
    if c == quote && (quote == '\'' || quote == '"') {
        return Err(());
    }
    if c != '\\' {
        return Ok((u32::from(c), true, chars.as_str()));
    }
    let e = chars.next().ok_or(())?;
    let rest = chars.as_str();
    let simple = match e {
        'a' => Some(0x07),
        'b' => Some(0x08),
        'f' => Some(0x0c),
        'n' => Some(0x0a),
        'r' => Some(0x0d),
        't' => Some(0x09),
        'v' => Some(0x0b),
        '\\' => Some(0x5c),
        '\'' | '"' if e == quote => Some(u32::from(e)),
        _ => None,
    };
    if let Some(v) = simple {
        return Ok((v, true, rest));
    }
    match e {
        'x' | 'u' | 'U' => {
            let n = match e {
                'x' => 2,
                'u' => 4,
                _ => 8,
            };
            let hex = rest.get(..n).ok_or(())?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(());
            }
            let v = u32::from_str_radix(hex, 16).map_err(|_| ())?;
            if e == 'x' {
                return Ok((v, false, &rest[n..]));
            }
            if char::from_u32(v).is_none() {
                return Err(());
            }
            Ok((v, true, &rest[n..]))
        }
        '0'..='7' => {
            let oct = rest.get(..2).ok_or(())?;
            if !oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return Err(());
            }
            let v = (u32::from(e) - u32::from('0')) * 64
                + u32::from_str_radix(oct, 8).map_err(|_| ())?;
            if v > 255 {
                return Err(());
            }
            Ok((v, false, &rest[2..]))
        }
        _ => Err(()),
    }
}

/// `strconv.Unquote` of a "quoted" or `raw` string literal.
fn unquote(lit: &str) -> Result<String, String> {
    const BAD: &str = "invalid syntax";
    if let Some(raw) = lit.strip_prefix('`') {
        let body = raw.strip_suffix('`').ok_or(BAD)?;
        return Ok(body.replace('\r', ""));
    }
    let body = lit
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or(BAD)?;
    if body.contains('\n') {
        return Err(BAD.to_string());
    }
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while !rest.is_empty() {
        let (v, whole, tail) = unquote_char(rest, '"').map_err(|()| BAD.to_string())?;
        match char::from_u32(v) {
            Some(c) if whole => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => out.push(v as u8),
        }
        rest = tail;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

// ---------------------------------------------------------------------------------
// Time, as Go's time package formats and parses it (in UTC).
// ---------------------------------------------------------------------------------

/// An instant: Unix seconds and nanoseconds into the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Time {
    secs: i64,
    nanos: u32,
}

const NANOS_PER_SEC: i64 = 1_000_000_000;

impl Time {
    /// Go's zero time, 0001-01-01 00:00:00 UTC: what `toDate` gives for a string it
    /// cannot parse.
    const ZERO: Time = Time {
        secs: -62_135_596_800,
        nanos: 0,
    };

    fn from_unix_nanos(ns: i64) -> Time {
        Time::unix(0, ns)
    }

    /// Go's `time.Unix(sec, nsec)`: `nsec` may be outside [0, 1e9).
    fn unix(secs: i64, nsec: i64) -> Time {
        Time {
            secs: secs.wrapping_add(nsec.div_euclid(NANOS_PER_SEC)),
            nanos: nsec.rem_euclid(NANOS_PER_SEC) as u32,
        }
    }

    fn now() -> Time {
        let now = std::time::SystemTime::now();
        match now.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Time {
                secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let ns = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
                Time::unix(0, -ns)
            }
        }
    }

    fn unix_milli(self) -> i64 {
        self.secs
            .wrapping_mul(1000)
            .wrapping_add(i64::from(self.nanos) / 1_000_000)
    }

    fn unix_micro(self) -> i64 {
        self.secs
            .wrapping_mul(1_000_000)
            .wrapping_add(i64::from(self.nanos) / 1000)
    }

    /// Wraps outside 1678–2262, as Go's does.
    fn unix_nano(self) -> i64 {
        self.secs
            .wrapping_mul(NANOS_PER_SEC)
            .wrapping_add(i64::from(self.nanos))
    }

    /// How Go prints a `time.Time` (its `String` method).
    fn to_go_string(self) -> String {
        format_time(self, "2006-01-02 15:04:05.999999999 -0700 MST")
    }
}

/// A time's calendar fields, in UTC.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    nanos: u32,
    /// Day of the year, from 1.
    yday: u32,
    /// Day of the week, Sunday 0.
    wday: u32,
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A proleptic Gregorian date to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in(month: u32, year: i64) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn civil(t: Time) -> Civil {
    let days = t.secs.div_euclid(86_400);
    let sod = t.secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: sod / 3600,
        min: sod / 60 % 60,
        sec: sod % 60,
        nanos: t.nanos,
        yday: (days - days_from_civil(year, 1, 1) + 1) as u32,
        wday: (days + 4).rem_euclid(7) as u32,
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The elements of a Go layout (`stdLongMonth`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    Pm,
    PmLower,
    Tz,
    Iso8601Tz,
    Iso8601SecondsTz,
    Iso8601ShortTz,
    Iso8601ColonTz,
    Iso8601ColonSecondsTz,
    NumTz,
    NumSecondsTz,
    NumShortTz,
    NumColonTz,
    NumColonSecondsTz,
    /// `.000` (`n` digits, kept) with its separator, `.` or `,`.
    FracSecond0(usize, char),
    /// `.999` (`n` digits, trailing zeros dropped).
    FracSecond9(usize, char),
}

/// Go's `nextStdChunk`: the text before the layout's first element, the element,
/// and the rest.
fn next_std_chunk(layout: &str) -> (&str, Option<Std>, &str) {
    let b = layout.as_bytes();
    let at = |i: usize, s: &str| layout.get(i..).is_some_and(|r| r.starts_with(s));
    let lower_at = |i: usize| b.get(i).is_some_and(u8::is_ascii_lowercase);
    let mut i = 0;
    while i < b.len() {
        let found = match b[i] {
            b'J' if at(i, "January") => Some((Std::LongMonth, 7)),
            b'J' if at(i, "Jan") && !lower_at(i + 3) => Some((Std::Month, 3)),
            b'M' if at(i, "Monday") => Some((Std::LongWeekDay, 6)),
            b'M' if at(i, "Mon") && !lower_at(i + 3) => Some((Std::WeekDay, 3)),
            b'M' if at(i, "MST") => Some((Std::Tz, 3)),
            b'0' => match b.get(i + 1) {
                Some(b'1') => Some((Std::ZeroMonth, 2)),
                Some(b'2') => Some((Std::ZeroDay, 2)),
                Some(b'3') => Some((Std::ZeroHour12, 2)),
                Some(b'4') => Some((Std::ZeroMinute, 2)),
                Some(b'5') => Some((Std::ZeroSecond, 2)),
                Some(b'6') => Some((Std::Year, 2)),
                Some(b'0') if b.get(i + 2) == Some(&b'2') => Some((Std::ZeroYearDay, 3)),
                _ => None,
            },
            b'1' if b.get(i + 1) == Some(&b'5') => Some((Std::Hour, 2)),
            b'1' => Some((Std::NumMonth, 1)),
            b'2' if at(i, "2006") => Some((Std::LongYear, 4)),
            b'2' => Some((Std::Day, 1)),
            b'_' if at(i, "_2006") => {
                // A literal `_` before the year.
                return (&layout[..i + 1], Some(Std::LongYear), &layout[i + 5..]);
            }
            b'_' if at(i, "_2") => Some((Std::UnderDay, 2)),
            b'_' if at(i, "__2") => Some((Std::UnderYearDay, 3)),
            b'3' => Some((Std::Hour12, 1)),
            b'4' => Some((Std::Minute, 1)),
            b'5' => Some((Std::Second, 1)),
            b'P' if b.get(i + 1) == Some(&b'M') => Some((Std::Pm, 2)),
            b'p' if b.get(i + 1) == Some(&b'm') => Some((Std::PmLower, 2)),
            b'-' if at(i, "-070000") => Some((Std::NumSecondsTz, 7)),
            b'-' if at(i, "-07:00:00") => Some((Std::NumColonSecondsTz, 9)),
            b'-' if at(i, "-0700") => Some((Std::NumTz, 5)),
            b'-' if at(i, "-07:00") => Some((Std::NumColonTz, 6)),
            b'-' if at(i, "-07") => Some((Std::NumShortTz, 3)),
            b'Z' if at(i, "Z070000") => Some((Std::Iso8601SecondsTz, 7)),
            b'Z' if at(i, "Z07:00:00") => Some((Std::Iso8601ColonSecondsTz, 9)),
            b'Z' if at(i, "Z0700") => Some((Std::Iso8601Tz, 5)),
            b'Z' if at(i, "Z07:00") => Some((Std::Iso8601ColonTz, 6)),
            b'Z' if at(i, "Z07") => Some((Std::Iso8601ShortTz, 3)),
            c @ (b'.' | b',') if matches!(b.get(i + 1), Some(b'0' | b'9')) => {
                let ch = b[i + 1];
                let mut j = i + 1;
                while b.get(j) == Some(&ch) {
                    j += 1;
                }
                // Only a fraction if the run of digits ends here.
                if b.get(j).is_some_and(u8::is_ascii_digit) {
                    None
                } else {
                    let n = j - (i + 1);
                    let std = if ch == b'0' {
                        Std::FracSecond0(n, char::from(c))
                    } else {
                        Std::FracSecond9(n, char::from(c))
                    };
                    Some((std, j - i))
                }
            }
            _ => None,
        };
        if let Some((std, len)) = found {
            return (&layout[..i], Some(std), &layout[i + len..]);
        }
        i += 1;
    }
    (layout, None, "")
}

/// Go's `appendInt`: `x` in decimal, zero-padded to `width`.
fn push_int(out: &mut String, x: i64, width: usize) {
    if x < 0 {
        out.push('-');
    }
    let _ = write!(out, "{:0width$}", x.unsigned_abs());
}

/// Go's `Time.Format` in UTC.
fn format_time(t: Time, layout: &str) -> String {
    let c = civil(t);
    let mut out = String::with_capacity(layout.len() + 10);
    let mut rest = layout;
    loop {
        let (prefix, std, suffix) = next_std_chunk(rest);
        out.push_str(prefix);
        let Some(std) = std else {
            break;
        };
        rest = suffix;
        let hour12 = match c.hour % 12 {
            0 => 12,
            h => h,
        };
        match std {
            Std::Year => push_int(&mut out, c.year.abs() % 100, 2),
            Std::LongYear => push_int(&mut out, c.year, 4),
            Std::Month => out.push_str(&MONTHS[c.month as usize - 1][..3]),
            Std::LongMonth => out.push_str(MONTHS[c.month as usize - 1]),
            Std::NumMonth => push_int(&mut out, i64::from(c.month), 0),
            Std::ZeroMonth => push_int(&mut out, i64::from(c.month), 2),
            Std::WeekDay => out.push_str(&DAYS[c.wday as usize][..3]),
            Std::LongWeekDay => out.push_str(DAYS[c.wday as usize]),
            Std::Day => push_int(&mut out, i64::from(c.day), 0),
            Std::UnderDay => {
                if c.day < 10 {
                    out.push(' ');
                }
                push_int(&mut out, i64::from(c.day), 0);
            }
            Std::ZeroDay => push_int(&mut out, i64::from(c.day), 2),
            Std::UnderYearDay => {
                let _ = write!(out, "{:>3}", c.yday);
            }
            Std::ZeroYearDay => push_int(&mut out, i64::from(c.yday), 3),
            Std::Hour => push_int(&mut out, i64::from(c.hour), 2),
            Std::Hour12 => push_int(&mut out, i64::from(hour12), 0),
            Std::ZeroHour12 => push_int(&mut out, i64::from(hour12), 2),
            Std::Minute => push_int(&mut out, i64::from(c.min), 0),
            Std::ZeroMinute => push_int(&mut out, i64::from(c.min), 2),
            Std::Second => push_int(&mut out, i64::from(c.sec), 0),
            Std::ZeroSecond => push_int(&mut out, i64::from(c.sec), 2),
            Std::Pm => out.push_str(if c.hour >= 12 { "PM" } else { "AM" }),
            Std::PmLower => out.push_str(if c.hour >= 12 { "pm" } else { "am" }),
            Std::Iso8601Tz
            | Std::Iso8601SecondsTz
            | Std::Iso8601ShortTz
            | Std::Iso8601ColonTz
            | Std::Iso8601ColonSecondsTz => out.push('Z'),
            Std::NumTz => out.push_str("+0000"),
            Std::NumSecondsTz => out.push_str("+000000"),
            Std::NumShortTz => out.push_str("+00"),
            Std::NumColonTz => out.push_str("+00:00"),
            Std::NumColonSecondsTz => out.push_str("+00:00:00"),
            Std::Tz => out.push_str("UTC"),
            Std::FracSecond0(n, sep) => {
                out.push(sep);
                let digits = format!("{:09}", c.nanos);
                out.push_str(&digits[..n.min(9)]);
            }
            Std::FracSecond9(n, sep) => {
                let digits = format!("{:09}", c.nanos);
                let kept = digits[..n.min(9)].trim_end_matches('0');
                if !kept.is_empty() {
                    out.push(sep);
                    out.push_str(kept);
                }
            }
        }
    }
    out
}

/// Go's `getnum`: one or two digits (exactly two when `fixed`).
fn get_num(v: &[u8], fixed: bool) -> Option<(u32, &[u8])> {
    let d0 = v.first().filter(|c| c.is_ascii_digit())?;
    match v.get(1).filter(|c| c.is_ascii_digit()) {
        Some(d1) => Some((u32::from(d0 - b'0') * 10 + u32::from(d1 - b'0'), &v[2..])),
        None if fixed => None,
        None => Some((u32::from(d0 - b'0'), &v[1..])),
    }
}

/// Go's `getnum3`: one to three digits (exactly three when `fixed`).
fn get_num3(v: &[u8], fixed: bool) -> Option<(u32, &[u8])> {
    let n = v.iter().take(3).take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || (fixed && n != 3) {
        return None;
    }
    let num = v[..n]
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    Some((num, &v[n..]))
}

/// A case-insensitive match of one of `names` at the start of `v`.
fn lookup_name(names: &[&str], v: &[u8]) -> Option<(usize, usize)> {
    names.iter().enumerate().find_map(|(i, name)| {
        let n = name.len();
        (v.len() >= n && v[..n].eq_ignore_ascii_case(name.as_bytes())).then_some((i, n))
    })
}

/// Fractional seconds: `v` starts with the separator, then `n - 1` digits.
fn parse_nanos(v: &[u8], n: usize) -> Option<u32> {
    if !matches!(v.first(), Some(b'.' | b',')) {
        return None;
    }
    let digits = &v[1..n.min(10).min(v.len())];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut ns = digits
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    for _ in digits.len()..9 {
        ns *= 10;
    }
    Some(ns)
}

/// A numeric zone offset in seconds east of UTC, and the rest of the value.
fn parse_offset(std: Std, v: &[u8]) -> Option<(i64, &[u8])> {
    let two = |s: &[u8]| -> Option<i64> {
        get_num(s, true).and_then(|(n, rest)| rest.is_empty().then_some(i64::from(n)))
    };
    let (sign, h, m, s, rest): (u8, &[u8], &[u8], &[u8], &[u8]) = match std {
        Std::Iso8601ColonTz | Std::NumColonTz => {
            if v.len() < 6 || v[3] != b':' {
                return None;
            }
            (v[0], &v[1..3], &v[4..6], b"00", &v[6..])
        }
        Std::NumShortTz | Std::Iso8601ShortTz => {
            if v.len() < 3 {
                return None;
            }
            (v[0], &v[1..3], b"00", b"00", &v[3..])
        }
        Std::Iso8601ColonSecondsTz | Std::NumColonSecondsTz => {
            if v.len() < 9 || v[3] != b':' || v[6] != b':' {
                return None;
            }
            (v[0], &v[1..3], &v[4..6], &v[7..9], &v[9..])
        }
        Std::Iso8601SecondsTz | Std::NumSecondsTz => {
            if v.len() < 7 {
                return None;
            }
            (v[0], &v[1..3], &v[3..5], &v[5..7], &v[7..])
        }
        _ => {
            if v.len() < 5 {
                return None;
            }
            (v[0], &v[1..3], &v[3..5], b"00", &v[5..])
        }
    };
    let offset = (two(h)? * 60 + two(m)?) * 60 + two(s)?;
    match sign {
        b'+' => Some((offset, rest)),
        b'-' => Some((-offset, rest)),
        _ => None,
    }
}

/// Go's `time.Parse` in UTC (as Sprig's `toDate`); `None` where Go returns an error.
/// A zone abbreviation other than UTC counts as offset 0, as Go does for one it
/// does not know.
fn parse_time(layout: &str, value: &str) -> Option<Time> {
    let mut layout = layout;
    let mut v = value.as_bytes();
    let (mut year, mut month, mut day, mut yday) = (0i64, None, None, None);
    let (mut hour, mut min, mut sec, mut nsec) = (0u32, 0u32, 0u32, 0u32);
    let (mut pm, mut am) = (false, false);
    let mut offset = 0i64;
    loop {
        let (prefix, std, suffix) = next_std_chunk(layout);
        v = skip_prefix(v, prefix.as_bytes())?;
        let Some(std) = std else {
            if !v.is_empty() {
                return None;
            }
            break;
        };
        layout = suffix;
        match std {
            Std::Year => {
                let (n, rest) = get_num(v, true)?;
                v = rest;
                year = i64::from(n) + if n >= 69 { 1900 } else { 2000 };
            }
            Std::LongYear => {
                if v.len() < 4 || !v[..4].iter().all(u8::is_ascii_digit) {
                    return None;
                }
                year = v[..4]
                    .iter()
                    .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
                v = &v[4..];
            }
            Std::Month | Std::LongMonth => {
                let names: Vec<&str> = if std == Std::Month {
                    MONTHS.iter().map(|m| &m[..3]).collect()
                } else {
                    MONTHS.to_vec()
                };
                let (i, n) = lookup_name(&names, v)?;
                month = Some(i as u32 + 1);
                v = &v[n..];
            }
            Std::NumMonth | Std::ZeroMonth => {
                let (n, rest) = get_num(v, std == Std::ZeroMonth)?;
                if !(1..=12).contains(&n) {
                    return None;
                }
                month = Some(n);
                v = rest;
            }
            Std::WeekDay | Std::LongWeekDay => {
                let names: Vec<&str> = if std == Std::WeekDay {
                    DAYS.iter().map(|d| &d[..3]).collect()
                } else {
                    DAYS.to_vec()
                };
                let (_, n) = lookup_name(&names, v)?;
                v = &v[n..];
            }
            Std::Day | Std::UnderDay | Std::ZeroDay => {
                if std == Std::UnderDay && v.first() == Some(&b' ') {
                    v = &v[1..];
                }
                let (n, rest) = get_num(v, std == Std::ZeroDay)?;
                day = Some(n);
                v = rest;
            }
            Std::UnderYearDay | Std::ZeroYearDay => {
                for _ in 0..2 {
                    if std == Std::UnderYearDay && v.first() == Some(&b' ') {
                        v = &v[1..];
                    }
                }
                let (n, rest) = get_num3(v, std == Std::ZeroYearDay)?;
                yday = Some(n);
                v = rest;
            }
            Std::Hour => {
                let (n, rest) = get_num(v, false)?;
                if n >= 24 {
                    return None;
                }
                hour = n;
                v = rest;
            }
            Std::Hour12 | Std::ZeroHour12 => {
                let (n, rest) = get_num(v, std == Std::ZeroHour12)?;
                if n > 12 {
                    return None;
                }
                hour = n;
                v = rest;
            }
            Std::Minute | Std::ZeroMinute => {
                let (n, rest) = get_num(v, std == Std::ZeroMinute)?;
                if n >= 60 {
                    return None;
                }
                min = n;
                v = rest;
            }
            Std::Second | Std::ZeroSecond => {
                let (n, rest) = get_num(v, std == Std::ZeroSecond)?;
                if n >= 60 {
                    return None;
                }
                sec = n;
                v = rest;
                // A fraction in the value that the layout does not have.
                if v.len() >= 2 && matches!(v[0], b'.' | b',') && v[1].is_ascii_digit() {
                    let next = next_std_chunk(layout).1;
                    if !matches!(next, Some(Std::FracSecond0(..) | Std::FracSecond9(..))) {
                        let n = 1 + v[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                        nsec = parse_nanos(v, n)?;
                        v = &v[n..];
                    }
                }
            }
            Std::Pm | Std::PmLower => {
                let (am_s, pm_s): (&[u8], &[u8]) = if std == Std::Pm {
                    (b"AM", b"PM")
                } else {
                    (b"am", b"pm")
                };
                let p = v.get(..2)?;
                if p == pm_s {
                    pm = true;
                } else if p == am_s {
                    am = true;
                } else {
                    return None;
                }
                v = &v[2..];
            }
            Std::Iso8601Tz
            | Std::Iso8601SecondsTz
            | Std::Iso8601ShortTz
            | Std::Iso8601ColonTz
            | Std::Iso8601ColonSecondsTz
                if v.first() == Some(&b'Z') =>
            {
                v = &v[1..];
                offset = 0;
            }
            Std::Iso8601Tz
            | Std::Iso8601SecondsTz
            | Std::Iso8601ShortTz
            | Std::Iso8601ColonTz
            | Std::Iso8601ColonSecondsTz
            | Std::NumTz
            | Std::NumSecondsTz
            | Std::NumShortTz
            | Std::NumColonTz
            | Std::NumColonSecondsTz => {
                let (o, rest) = parse_offset(std, v)?;
                offset = o;
                v = rest;
            }
            Std::Tz => {
                if v.starts_with(b"UTC") {
                    v = &v[3..];
                    offset = 0;
                } else {
                    let (n, gmt_offset) = parse_zone_name(v)?;
                    offset = gmt_offset;
                    v = &v[n..];
                }
            }
            Std::FracSecond0(n, _) => {
                if v.len() < n + 1 {
                    return None;
                }
                nsec = parse_nanos(v, n + 1)?;
                v = &v[n + 1..];
            }
            Std::FracSecond9(..) => {
                if v.len() >= 2 && matches!(v[0], b'.' | b',') && v[1].is_ascii_digit() {
                    let n = 1 + v[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                    nsec = parse_nanos(v, n)?;
                    v = &v[n..];
                }
            }
        }
    }
    if pm && hour < 12 {
        hour += 12;
    } else if am && hour == 12 {
        hour = 0;
    }
    let (month, day) = match yday {
        Some(yd) => {
            let max = if is_leap(year) { 366 } else { 365 };
            if yd < 1 || yd > max {
                return None;
            }
            let (_, m, d) = civil_from_days(days_from_civil(year, 1, 1) + i64::from(yd) - 1);
            if month.is_some_and(|mo| mo != m) || day.is_some_and(|da| da != d) {
                return None;
            }
            (m, d)
        }
        None => (month.unwrap_or(1), day.unwrap_or(1)),
    };
    if day < 1 || day > days_in(month, year) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec);
    Some(Time {
        secs: secs - offset,
        nanos: nsec,
    })
}

/// Go's `skip`: the layout's literal text; a space matches any run of spaces.
fn skip_prefix<'v>(mut v: &'v [u8], mut prefix: &[u8]) -> Option<&'v [u8]> {
    while let Some((&p, rest)) = prefix.split_first() {
        if p == b' ' {
            if v.first().is_some_and(|&c| c != b' ') {
                return None;
            }
            prefix = trim_spaces(prefix);
            v = trim_spaces(v);
            continue;
        }
        if v.first() != Some(&p) {
            return None;
        }
        prefix = rest;
        v = &v[1..];
    }
    Some(v)
}

fn trim_spaces(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| c == b' ').count();
    &s[n..]
}

/// Go's `parseTimeZone`, near enough: three to five upper-case letters, or `GMT`
/// with an hour offset. Returns the length and the offset (0 but for `GMT±h`).
fn parse_zone_name(v: &[u8]) -> Option<(usize, i64)> {
    if v.starts_with(b"GMT") {
        let rest = &v[3..];
        let sign = match rest.first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Some((3, 0)),
        };
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 2 {
            return Some((3, 0));
        }
        let h = rest[1..=digits]
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
        if h > 23 {
            return None;
        }
        return Some((4 + digits, sign * h * 3600));
    }
    let n = v
        .iter()
        .take(6)
        .take_while(|c| c.is_ascii_uppercase())
        .count();
    if (3..=5).contains(&n) {
        return Some((n, 0));
    }
    None
}

/// Loki's `unixToTime`: Unix days, seconds, milliseconds, microseconds or
/// nanoseconds, told apart by the number of digits.
fn unix_to_time(epoch: &str) -> Result<Time, String> {
    let n = parse_base10(epoch).map_err(|e| format!("unable to parse time '{epoch}': {e}"))?;
    Ok(match epoch.len() {
        5 => Time::unix(n.wrapping_mul(86_400), 0),
        10 => Time::unix(n, 0),
        13 => Time::unix(0, n.wrapping_mul(1_000_000)),
        16 => Time::unix(0, n.wrapping_mul(1000)),
        19 => Time::unix(0, n),
        _ => return Err(format!("unable to parse time '{epoch}': %!w(<nil>)")),
    })
}

/// Go's `strconv.ParseInt(s, 10, 64)`, with its error text.
fn parse_base10(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseInt: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    s.parse::<i64>().map_err(|_| {
        format!(
            "strconv.ParseInt: parsing {}: value out of range",
            go_quote(s)
        )
    })
}

// ---------------------------------------------------------------------------------
// Sprig's float arithmetic, which runs on shopspring/decimal: `addf 0.1 0.2` is 0.3.
// ---------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum DecOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// A decimal `m × 10^e`.
#[derive(Clone, Copy)]
struct Dec {
    m: i128,
    e: i32,
}

impl Dec {
    /// The shortest decimal that reads back as `f` (`decimal.NewFromFloat`).
    fn from_f64(f: f64) -> Result<Dec, String> {
        if !f.is_finite() {
            return Err(format!(
                "Cannot create a Decimal from {}",
                format_float(f, 'g', -1)
            ));
        }
        if f == 0.0 {
            return Ok(Dec { m: 0, e: 0 });
        }
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
        let m: i128 = digits.parse().unwrap_or(0);
        let exp: i32 = exp.parse().unwrap_or(0);
        let m = if mant.starts_with('-') { -m } else { m };
        Ok(Dec {
            m,
            e: exp - (digits.len() as i32 - 1),
        })
    }

    fn to_f64(self) -> f64 {
        format!("{}e{}", self.m, self.e).parse().unwrap_or(f64::NAN)
    }

    fn normalized(mut self) -> Dec {
        while self.m != 0 && self.m % 10 == 0 {
            self.m /= 10;
            self.e += 1;
        }
        self
    }

    /// `None` when the exact result does not fit; the caller then uses floats.
    fn apply(self, op: DecOp, o: Dec) -> Option<Result<Dec, String>> {
        let pow10 = |n: i32| u32::try_from(n).ok().and_then(|n| 10i128.checked_pow(n));
        let r = match op {
            DecOp::Add | DecOp::Sub => {
                let e = self.e.min(o.e);
                let a = self.m.checked_mul(pow10(self.e - e)?)?;
                let b = o.m.checked_mul(pow10(o.e - e)?)?;
                let m = if op == DecOp::Add {
                    a.checked_add(b)?
                } else {
                    a.checked_sub(b)?
                };
                Dec { m, e }
            }
            DecOp::Mul => Dec {
                m: self.m.checked_mul(o.m)?,
                e: self.e.checked_add(o.e)?,
            },
            DecOp::Div => {
                if o.m == 0 {
                    return Some(Err("decimal division by zero".to_string()));
                }
                // The quotient to 16 decimal places, half away from zero.
                let k = self.e - o.e + 16;
                let (num, den) = if k >= 0 {
                    (self.m.checked_mul(pow10(k)?)?, o.m)
                } else {
                    (self.m, o.m.checked_mul(pow10(-k)?)?)
                };
                let (mut q, r) = (num / den, num % den);
                if r.unsigned_abs() >= den.unsigned_abs() - r.unsigned_abs() {
                    q += if (num < 0) == (den < 0) { 1 } else { -1 };
                }
                Dec { m: q, e: -16 }
            }
        };
        Some(Ok(r.normalized()))
    }
}

/// Sprig's `addf`, `subf`, `mulf` and `divf`: `first`, then each argument in turn.
fn decimal_fold(first: f64, rest: &[Value], op: DecOp) -> Result<f64, String> {
    let mut acc = Dec::from_f64(first)?;
    let mut float = first;
    let mut exact = true;
    for v in rest {
        let x = to_float64(v);
        let d = Dec::from_f64(x)?;
        float = match op {
            DecOp::Add => float + x,
            DecOp::Sub => float - x,
            DecOp::Mul => float * x,
            DecOp::Div => float / x,
        };
        if exact {
            match acc.apply(op, d) {
                Some(r) => acc = r?,
                None => exact = false,
            }
        } else if op == DecOp::Div && x == 0.0 {
            return Err("decimal division by zero".to_string());
        }
    }
    Ok(if exact { acc.to_f64() } else { float })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2023-11-14T22:13:20.123456789Z, a Tuesday, day 318 of the year.
    const TS: i64 = 1_700_000_000_123_456_789;

    fn labels() -> BTreeMap<String, String> {
        [
            ("app", "api"),
            ("level", "warn"),
            ("msg", "hello world"),
            ("n", "5"),
            ("f", "1.5"),
            ("empty", ""),
            ("path", "/api/v1/users"),
            ("dur", "1m30s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn parse(t: &str) -> Template {
        Template::parse(t).unwrap_or_else(|e| panic!("parse {t:?}: {e}"))
    }

    fn render(t: &str) -> String {
        parse(t)
            .render(&labels(), "the LINE", TS)
            .unwrap_or_else(|e| panic!("render {t:?}: {e}"))
    }

    fn render_err(t: &str) -> String {
        match parse(t).render(&labels(), "the LINE", TS) {
            Ok(out) => panic!("render {t:?} gave {out:?}, not an error"),
            Err(e) => e,
        }
    }

    fn parse_err(t: &str) -> String {
        match Template::parse(t) {
            Ok(_) => panic!("parse {t:?} succeeded"),
            Err(e) => e,
        }
    }

    fn check(cases: &[(&str, &str)]) {
        for (t, want) in cases {
            assert_eq!(render(t), *want, "template {t:?}");
        }
    }

    #[test]
    fn text_and_fields() {
        check(&[
            ("", ""),
            ("plain text", "plain text"),
            ("{{.app}}", "api"),
            ("{{ .app }}-{{ .level }}", "api-warn"),
            ("<{{ .missing }}>", "<>"),
            ("{{ $.app }}", "api"),
            // Go's parser lets a pipeline end in `|`.
            ("{{ .app | }}", "api"),
            ("a{{.app}}b{{.level}}c", "aapibwarnc"),
            ("{ {.app} }", "{ {.app} }"),
            ("{{ __line__ }}", "the LINE"),
        ]);
    }

    #[test]
    fn custom_fields() {
        struct One;
        impl Fields for One {
            fn field(&self, name: &str) -> Option<&str> {
                (name == "x").then_some("y")
            }
        }
        let t = parse("{{ .x }}{{ .z }}");
        assert_eq!(t.render(&One, "", 0).unwrap(), "y");
    }

    #[test]
    fn literals() {
        check(&[
            (r#"{{ "a\tb\u00e9\x41\101\\\"" }}"#, "a\tbéAA\\\""),
            ("{{ `raw\\n \"x\"` }}", "raw\\n \"x\""),
            ("{{ 42 }}|{{ -7 }}|{{ +3 }}", "42|-7|3"),
            (
                "{{ 0x1F }}|{{ 0o17 }}|{{ 017 }}|{{ 0b101 }}|{{ 1_000 }}",
                "31|15|15|5|1000",
            ),
            ("{{ 'a' }}|{{ '\\n' }}|{{ 'é' }}", "97|10|233"),
            (
                "{{ 1.5 }}|{{ 3.0 }}|{{ -2.5 }}|{{ 1e3 }}",
                "1.5|3|-2.5|1000",
            ),
            ("{{ 1e21 }}|{{ 1e6 }}|{{ 100000.0 }}", "1e+21|1e+06|100000"),
            (
                "{{ 0.0001 }}|{{ 0.00001 }}|{{ 1234567.0 }}",
                "0.0001|1e-05|1.234567e+06",
            ),
            ("{{ true }}|{{ false }}", "true|false"),
            ("{{ 9223372036854775807 }}", "9223372036854775807"),
        ]);
    }

    #[test]
    fn pipelines_and_calls() {
        check(&[
            ("{{ .app | ToUpper }}", "API"),
            ("{{ .app | ToUpper | printf \"%s!\" }}", "API!"),
            ("{{ printf \"%s-%s\" .app .level }}", "api-warn"),
            ("{{ ToUpper (printf \"%s\" .app) }}", "API"),
            ("{{ \"x\" | printf \"%s-%s\" \"a\" }}", "a-x"),
            ("{{ (printf \"%s\" .app) | upper }}", "API"),
            ("{{ ToUpper __line__ }}", "THE LINE"),
            ("{{ __line__ | lower }}", "the line"),
            (
                "{{ .path | replace \"/\" \"_\" | trunc 5 | upper }}",
                "_API_",
            ),
        ]);
    }

    #[test]
    fn conditionals() {
        check(&[
            ("{{ if .app }}yes{{ else }}no{{ end }}", "yes"),
            ("{{ if .empty }}yes{{ else }}no{{ end }}", "no"),
            ("{{ if .missing }}yes{{ else }}no{{ end }}", "no"),
            (
                "{{ if 0 }}y{{ else }}n{{ end }}{{ if 0.0 }}y{{ else }}n{{ end }}",
                "nn",
            ),
            (
                "{{ if false }}y{{ else }}n{{ end }}{{ if 1 }}y{{ end }}",
                "ny",
            ),
            (
                "{{ if eq .level \"error\" }}E{{ else if eq .level \"warn\" }}W{{ else }}I{{ end }}",
                "W",
            ),
            (
                "{{ if eq .level \"x\" }}1{{ else if eq .level \"y\" }}2{{ else }}3{{ end }}",
                "3",
            ),
            (
                "{{ if and (contains \"he\" .msg) (hasSuffix \"ld\" .msg) }}both{{ end }}",
                "both",
            ),
            ("{{ if or .empty .missing }}y{{ else }}n{{ end }}", "n"),
            ("{{ if not .empty }}y{{ end }}", "y"),
            ("{{ with .app }}<{{ . }}>{{ end }}", "<api>"),
            ("{{ with .empty }}x{{ else }}none{{ end }}", "none"),
            (
                "{{ with .missing }}a{{ else with .app }}{{ . | upper }}{{ end }}",
                "API",
            ),
            (
                "{{ if .app }}{{ if .empty }}a{{ else }}b{{ end }}{{ end }}",
                "b",
            ),
        ]);
    }

    #[test]
    fn variables() {
        check(&[
            ("{{ $x := .app }}{{ $x }}-{{ $x | upper }}", "api-API"),
            (
                "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
                "2",
            ),
            ("{{ if $v := .level }}{{ $v }}{{ end }}", "warn"),
            ("{{ $ := 5 }}{{ $ }}", "5"),
        ]);
        assert_eq!(
            parse_err("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}"),
            "template: line:1: undefined variable \"$y\""
        );
        assert_eq!(
            parse_err("{{ $x }}"),
            "template: line:1: undefined variable \"$x\""
        );
    }

    #[test]
    fn trim_markers_and_comments() {
        check(&[
            ("a  {{- .app -}}  b", "aapib"),
            ("a {{- .app }} b", "aapi b"),
            ("a {{ .app -}} b", "a apib"),
            ("{{ .app -}}\n\n  x", "apix"),
            ("a\n  {{- /* comment */ -}}\n  b", "ab"),
            ("{{/* comment */}}x", "x"),
            ("x{{/* a\nmulti-line comment */}}y", "xy"),
            ("{{-3}}", "-3"),
            ("{{ 3 }} {{- 4 }}", "34"),
            ("{{ if true -}}\n  yes\n{{- end }}", "yes"),
        ]);
    }

    #[test]
    fn comparisons() {
        check(&[
            (
                "{{ eq .app \"api\" }}|{{ eq .app \"x\" \"api\" }}|{{ eq .app \"x\" }}",
                "true|true|false",
            ),
            ("{{ ne .app \"api\" }}|{{ ne 1 2 }}", "false|true"),
            (
                "{{ lt 1 2 }}|{{ lt \"b\" \"a\" }}|{{ le 2 2 }}|{{ gt 3 2 }}|{{ ge 2 3 }}",
                "true|false|true|true|false",
            ),
            ("{{ lt 1.5 2.5 }}|{{ eq 1.5 1.5 }}", "true|true"),
            (
                "{{ eq (int .n) 5 }}|{{ eq (add 2 3) 5 }}|{{ eq (len .app) 3 }}",
                "true|true|true",
            ),
            ("{{ eq true true }}|{{ eq .missing \"\" }}", "true|true"),
            (
                "{{ and 1 0 2 }}|{{ and 1 2 }}|{{ or 0 \"\" \"x\" }}|{{ or 0 \"\" }}|",
                "0|2|x||",
            ),
            ("{{ not \"\" }}|{{ not 1 }}", "true|false"),
            // and/or stop at the first argument that decides them.
            (
                "{{ and false (div 1 0) }}|{{ or true (div 1 0) }}",
                "false|true",
            ),
            ("{{ .missing | or \"dflt\" }}", "dflt"),
        ]);
        assert_eq!(
            render_err("{{ eq .n 5 }}"),
            "template: line:1:3: executing \"line\" at <eq .n 5>: error calling eq: \
             incompatible types for comparison"
        );
        assert!(
            render_err("{{ lt 1.5 2 }}")
                .ends_with("error calling lt: incompatible types for comparison")
        );
        assert!(
            render_err("{{ lt true false }}")
                .ends_with("error calling lt: invalid type for comparison")
        );
        assert!(
            render_err("{{ eq 1 }}").ends_with("error calling eq: missing argument for comparison")
        );
    }

    #[test]
    fn go_builtins() {
        check(&[
            ("{{ len .msg }}|{{ len \"héllo\" }}", "11|6"),
            ("{{ print \"a\" 1 2 \"b\" true }}", "a1 2btrue"),
            ("{{ println \"a\" 1 }}", "a 1\n"),
            ("{{ urlquery \"a b&c\" }}", "a+b%26c"),
            (
                "{{ html \"<a href='x'>&\\\"\" }}",
                "&lt;a href=&#39;x&#39;&gt;&amp;&#34;",
            ),
            ("{{ js \"it's <b>\\n\" }}", "it\\'s \\u003Cb\\u003E\\u000A"),
            ("{{ html 1 2 }}", "1 2"),
        ]);
        assert!(render_err("{{ len 5 }}").ends_with("error calling len: len of type int"));
    }

    #[test]
    fn string_functions() {
        check(&[
            (
                "{{ .msg | ToUpper }}|{{ ToLower \"ABC\" }}",
                "HELLO WORLD|abc",
            ),
            (
                "{{ upper .msg }}|{{ lower \"ÀB\" }}|{{ upper \"ß\" }}",
                "HELLO WORLD|àb|ß",
            ),
            (
                "{{ title \"hello wide_world x-y\" }}|{{ Title .msg }}",
                "Hello Wide_world X-Y|Hello World",
            ),
            (
                "{{ Replace .msg \"o\" \"0\" 1 }}|{{ Replace .msg \"o\" \"0\" -1 }}",
                "hell0 world|hell0 w0rld",
            ),
            (
                "{{ replace \"o\" \"0\" .msg }}|{{ .msg | replace \" \" \"_\" }}",
                "hell0 w0rld|hello_world",
            ),
            (
                "{{ Trim \"xxhixx\" \"x\" }}|{{ TrimLeft \"xxhixx\" \"x\" }}|{{ TrimRight \"xxhixx\" \"x\" }}",
                "hi|hixx|xxhi",
            ),
            (
                "{{ TrimPrefix .path \"/api\" }}|{{ TrimSuffix .path \"/users\" }}",
                "/v1/users|/api/v1",
            ),
            (
                "{{ TrimSpace \"  a b \\n\" }}|{{ trim \"\\t x \" }}",
                "a b|x",
            ),
            (
                "{{ trimAll \"x\" \"xxhixx\" }}|{{ trimPrefix \"/api\" .path }}|{{ trimSuffix \"/users\" .path }}",
                "hi|/v1/users|/api/v1",
            ),
            (
                "{{ substr 0 5 .msg }}|{{ substr 6 -1 .msg }}|{{ substr -1 5 .msg }}|{{ substr 3 1 .msg }}|{{ substr 6 99 .msg }}",
                "hello|world|hello||world",
            ),
            (
                "{{ trunc 5 .msg }}|{{ trunc -5 .msg }}|{{ trunc 50 .msg }}|{{ trunc 2 \"héllo\" }}",
                "hello|world|hello world|hé",
            ),
            (
                "{{ contains \"world\" .msg }}|{{ hasPrefix \"hello\" .msg }}|{{ hasSuffix \"hello\" .msg }}",
                "true|true|false",
            ),
            (
                "{{ indent 2 \"a\\nb\" }}|{{ nindent 2 \"a\" }}",
                "  a\n  b|\n  a",
            ),
            ("{{ repeat 3 \"ab\" }}|{{ repeat 0 \"ab\" }}", "ababab|"),
            (
                "{{ alignLeft 5 .app }}|{{ alignRight 5 .app }}|{{ alignLeft 2 .app }}|{{ alignRight 2 .app }}|{{ alignLeft -1 .app }}",
                "api  |  api|ap|pi|api",
            ),
            (
                "{{ default \"none\" .missing }}|{{ default \"none\" .app }}|{{ .missing | default \"none\" }}",
                "none|api|none",
            ),
            (
                "{{ default \"d\" 0 }}|{{ default \"d\" }}|{{ default 1 2 }}",
                "d|d|2",
            ),
            (
                "{{ b64enc \"hello\" }}|{{ b64dec \"aGVsbG8=\" }}|{{ b64dec \"!!!!\" }}",
                "aGVsbG8=|hello|illegal base64 data at input byte 0",
            ),
            (
                "{{ urlencode \"a b&c=d/é~*\" }}|{{ urldecode \"a+b%26c%3d\" }}",
                "a+b%26c%3Dd%2F%C3%A9~%2A|a b&c=",
            ),
        ]);
        assert!(
            render_err("{{ repeat -1 \"x\" }}")
                .ends_with("error calling repeat: strings: negative Repeat count")
        );
        assert!(render_err("{{ repeat 100000000 \"ab\" }}").contains("more than the 16777216"));
        assert_eq!(
            render_err("{{ urldecode \"%zz\" }}"),
            "template: line:1:3: executing \"line\" at <urldecode \"%zz\">: error calling urldecode: \
             invalid URL escape \"%zz\""
        );
    }

    #[test]
    fn regex_functions() {
        check(&[
            (
                "{{ regexReplaceAll `(\\w+)@(\\w+)` \"me@host\" \"${2}-$1\" }}",
                "host-me",
            ),
            // The piped value goes last: here it is the replacement.
            ("{{ \"0\" | regexReplaceAll \"o\" .msg }}", "hell0 w0rld"),
            (
                "{{ regexReplaceAllLiteral \"o\" .msg \"$1\" }}",
                "hell$1 w$1rld",
            ),
            (
                "{{ count \"o\" .msg }}|{{ count \"z\" .msg }}|{{ count \"l+\" .msg }}",
                "2|0|2",
            ),
            // \d, \w and \s are ASCII, as in Go.
            ("{{ regexReplaceAll `\\d` \"a1٣\" \"#\" }}", "a#٣"),
            ("{{ regexReplaceAll `\\w+` \"héllo\" \"X\" }}", "XéX"),
            ("{{ regexReplaceAll `[\\d.]+` \"v1.2x\" \"N\" }}", "vNx"),
            ("{{ regexReplaceAll `[^\\s]+` \"a b\" \"W\" }}", "W W"),
            ("{{ regexReplaceAll `\\bw` .msg \"W\" }}", "hello World"),
            ("{{ regexReplaceAll `[]a]` \"]ab\" \"-\" }}", "--b"),
            (
                "{{ regexReplaceAll `[[:digit:]x]` \"1x2y\" \"-\" }}",
                "---y",
            ),
            // A pattern that is not a literal is compiled when the line renders.
            (
                "{{ regexReplaceAll (printf \"%s\" \"l+\") .msg \"L\" }}",
                "heLo worLd",
            ),
        ]);
        let err = render_err("{{ regexReplaceAll \"(\" .msg \"x\" }}");
        assert!(
            err.starts_with(
                "template: line:1:3: executing \"line\" at <regexReplaceAll \"(\" .msg \"x\">: \
                 error calling regexReplaceAll: error parsing regexp: "
            ),
            "{err}"
        );
        assert!(err.ends_with(": `(`"), "{err}");
        assert!(
            render_err("{{ count \"[\" .msg }}")
                .contains("error calling count: error parsing regexp")
        );
    }

    #[test]
    fn integer_math() {
        check(&[
            ("{{ add 1 2 3 }}|{{ add .n 1 }}|{{ add }}", "6|6|0"),
            (
                "{{ sub 10 .n }}|{{ mul 2 3 4 }}|{{ div 7 2 }}|{{ mod 7 3 }}|{{ div -7 2 }}",
                "5|24|3|1|-3",
            ),
            (
                "{{ add \"1.0\" 1 }}|{{ add \"1.5\" 1 }}|{{ add \"0x10\" 1 }}|{{ add \"abc\" 1 }}|{{ add 2.9 1 }}",
                "2|1|17|1|3",
            ),
            (
                "{{ add true 1 }}|{{ add \"010\" 0 }}|{{ add \"08\" 0 }}",
                "2|8|0",
            ),
            ("{{ max 1 5 3 }}|{{ min 4 2 8 }}|{{ max \"7\" 2 }}", "5|2|7"),
            (
                "{{ int \"42\" }}|{{ int 3.9 }}|{{ int .n }}|{{ int \"x\" }}",
                "42|3|5|0",
            ),
            ("{{ .n | add 10 }}", "15"),
            (
                "{{ printf \"%T %T %T %T\" 1 (add 1 2) (len .app) (int 1) }}",
                "int int64 int int",
            ),
        ]);
        assert_eq!(
            render_err("{{ div 1 0 }}"),
            "template: line:1:3: executing \"line\" at <div 1 0>: error calling div: runtime error: \
             integer divide by zero"
        );
        assert!(render_err("{{ mod 1 0 }}").ends_with("integer divide by zero"));
        // Go will not pass an int64 where a function takes an int.
        assert_eq!(
            render_err("{{ trunc (add 1 2) .msg }}"),
            "template: line:1:16: executing \"line\" at <2>: wrong type for value; expected int; got int64"
        );
    }

    #[test]
    fn float_math() {
        check(&[
            (
                "{{ addf 0.1 0.2 }}|{{ subf 1 0.9 }}|{{ mulf 0.1 3 }}|{{ divf 10 3 }}",
                "0.3|0.1|0.3|3.3333333333333335",
            ),
            (
                "{{ addf .f 1 }}|{{ addf }}|{{ divf 1 8 }}|{{ divf 2 3 }}",
                "2.5|0|0.125|0.6666666666666667",
            ),
            ("{{ subf 10 1 2 3 }}|{{ mulf 1.5 2 2 }}", "4|6"),
            (
                "{{ maxf 1.5 2.5 }}|{{ minf 1.5 -2 }}|{{ maxf \"3\" 1 }}",
                "2.5|-2|3",
            ),
            (
                "{{ ceil 1.2 }}|{{ floor 1.8 }}|{{ ceil \"-1.5\" }}",
                "2|1|-1",
            ),
            (
                "{{ round 1.2345 2 }}|{{ round 2.5 0 }}|{{ round 1.26 1 0.7 }}|{{ round -2.5 0 }}",
                "1.23|3|1.2|-3",
            ),
            (
                "{{ float64 \"1.5\" }}|{{ float64 .n }}|{{ float64 \"x\" }}",
                "1.5|5|0",
            ),
            ("{{ addf 1e300 1e-300 }}", "1e+300"),
        ]);
        assert!(
            render_err("{{ divf 1 0 }}").ends_with("error calling divf: decimal division by zero")
        );
        assert!(render_err("{{ addf \"NaN\" 1 }}").ends_with("Cannot create a Decimal from NaN"));
    }

    #[test]
    fn byte_sizes_and_durations() {
        check(&[
            (
                "{{ bytes \"1.5KiB\" }}|{{ bytes \"2 MB\" }}|{{ bytes \"10\" }}|{{ bytes \"1,024 b\" }}",
                "1536|2e+06|10|1024",
            ),
            (
                "{{ duration .dur }}|{{ duration_seconds \"1.5h\" }}|{{ duration \"-250ms\" }}|{{ duration \"0\" }}",
                "90|5400|-0.25|0",
            ),
            (
                "{{ duration \"1h2m3.5s\" }}|{{ duration \"2µs\" }}",
                "3723.5|2e-06",
            ),
        ]);
        assert!(render_err("{{ duration \"bad\" }}").ends_with("time: invalid duration \"bad\""));
        assert!(
            render_err("{{ duration \"10\" }}").ends_with("time: missing unit in duration \"10\"")
        );
        assert!(
            render_err("{{ duration \"1x\" }}")
                .ends_with("time: unknown unit \"x\" in duration \"1x\"")
        );
        assert!(
            render_err("{{ bytes \"3 furlongs\" }}").ends_with("unhandled size name: furlongs")
        );
    }

    #[test]
    fn time_functions() {
        check(&[
            (
                "{{ __timestamp__ }}",
                "2023-11-14 22:13:20.123456789 +0000 UTC",
            ),
            (
                "{{ __timestamp__ | unixEpoch }}|{{ unixEpochMillis __timestamp__ }}|{{ __timestamp__ | unixEpochNanos }}",
                "1700000000|1700000000123|1700000000123456789",
            ),
            (
                "{{ __timestamp__ | date \"2006-01-02T15:04:05.000Z07:00\" }}",
                "2023-11-14T22:13:20.123Z",
            ),
            (
                "{{ date \"Mon Jan 2 15:04:05 MST 2006\" __timestamp__ }}",
                "Tue Nov 14 22:13:20 UTC 2023",
            ),
            (
                "{{ date \"Monday, January _2 06 3:04PM pm\" __timestamp__ }}",
                "Tuesday, November 14 23 10:13PM pm",
            ),
            (
                "{{ date \"002 __2 .000000 .999 .999999999 ,000 -0700 -07:00 Z0700\" __timestamp__ }}",
                "318 318 .123456 .123 .123456789 ,123 +0000 +00:00 Z",
            ),
            ("{{ date \"01/02 03:04:05\" 0 }}", "01/01 12:00:00"),
            (
                "{{ date \"2006-01-02\" (toDate \"2006-01-02\" \"2024-02-29\") }}",
                "2024-02-29",
            ),
            (
                "{{ toDate \"2006-01-02\" \"2024-02-29\" | unixEpoch }}",
                "1709164800",
            ),
            (
                "{{ toDate \"2006-01-02T15:04:05Z07:00\" \"2024-01-01T01:00:00+01:00\" | unixEpoch }}",
                "1704067200",
            ),
            (
                "{{ toDate \"02 Jan 06 15:04 MST\" \"01 Jan 24 00:00 UTC\" | unixEpoch }}",
                "1704067200",
            ),
            (
                "{{ toDate \"2006-01-02 15:04:05\" \"2024-01-01 00:00:00.5\" | unixEpochMillis }}",
                "1704067200500",
            ),
            (
                "{{ toDate \"Jan _2 3:04:05.000 PM 2006\" \"Jan  1 12:00:01.250 AM 2024\" | unixEpochMillis }}",
                "1704067201250",
            ),
            (
                "{{ toDate \"2006-01-02\" \"bad\" | unixEpoch }}|{{ toDate \"2006-01-02\" \"2023-02-29\" | unixEpoch }}",
                "-62135596800|-62135596800",
            ),
            (
                "{{ unixToTime \"1700000000\" | unixEpochMillis }}|{{ unixToTime \"1700000000123\" | unixEpochMillis }}",
                "1700000000000|1700000000123",
            ),
            (
                "{{ unixToTime \"1700000000123456\" | unixEpochNanos }}|{{ unixToTime \"1700000000123456789\" | unixEpochNanos }}",
                "1700000000123456000|1700000000123456789",
            ),
            ("{{ unixToTime \"19675\" | unixEpoch }}", "1699920000"),
            (
                "{{ __timestamp__.Unix }}|{{ __timestamp__.UnixMilli }}|{{ (__timestamp__).Year }}|{{ __timestamp__.YearDay }}",
                "1700000000|1700000000123|2023|318",
            ),
            (
                "{{ __timestamp__.Format \"15:04\" }}|{{ __timestamp__.UTC.Hour }}|{{ __timestamp__.IsZero }}",
                "22:13|22|false",
            ),
            ("{{ $t := __timestamp__ }}{{ $t.Day }}", "14"),
        ]);
        let now: i64 = render("{{ now | unixEpoch }}").parse().unwrap();
        assert!(now > 1_700_000_000, "{now}");
        assert_eq!(
            render_err("{{ unixToTime \"abc\" }}"),
            "template: line:1:3: executing \"line\" at <unixToTime \"abc\">: error calling unixToTime: \
             unable to parse time 'abc': strconv.ParseInt: parsing \"abc\": invalid syntax"
        );
        assert!(
            render_err("{{ unixToTime \"123\" }}")
                .ends_with("unable to parse time '123': %!w(<nil>)")
        );
        assert!(
            render_err("{{ __timestamp__.Month }}")
                .ends_with("can't evaluate field Month in type time.Time")
        );
        assert!(
            render_err("{{ __timestamp__.Format }}")
                .ends_with("wrong number of args for Format: want 1 got 0")
        );
        assert!(
            render_err("{{ unixEpoch .app }}")
                .ends_with("wrong type for value; expected time.Time; got string")
        );
    }

    #[test]
    fn printf_verbs() {
        check(&[
            (r#"{{ printf "%s|%v|%d" .app .app 42 }}"#, "api|api|42"),
            (
                r#"{{ printf "%5s|%-5s|%.2s|%05s" "ab" "ab" "abc" "ab" }}"#,
                "   ab|ab   |ab|000ab",
            ),
            (
                r#"{{ printf "%05d|%+d|% d|%-4d|%.3d|%+05d" 42 42 42 42 7 -42 }}"#,
                "00042|+42| 42|42  |007|-0042",
            ),
            (
                r#"{{ printf "%x|%X|%o|%b|%#x|%#o|%O|%x" 255 255 8 5 255 8 8 -255 }}"#,
                "ff|FF|10|101|0xff|010|0o10|-ff",
            ),
            (
                r#"{{ printf "%f|%.2f|%8.3f|%-8.1f|%05.1f|%+.1f" 3.14159 3.14159 3.14159 3.14159 3.14159 3.14159 }}"#,
                "3.141590|3.14|   3.142|3.1     |003.1|+3.1",
            ),
            (
                r#"{{ printf "%e|%E|%.2e|%e" 1234.5678 1234.5678 1234.5678 0.0 }}"#,
                "1.234568e+03|1.234568E+03|1.23e+03|0.000000e+00",
            ),
            (
                r#"{{ printf "%g|%g|%g|%g|%.3g|%G|%.3g" 1.5 1e21 100000.0 1e-5 3.14159 1e-7 1234.0 }}"#,
                "1.5|1e+21|100000|1e-05|3.14|1E-07|1.23e+03",
            ),
            (
                r#"{{ printf "%v|%v|%v|%.2v" 3.0 0.1 1234567.0 3.14159 }}"#,
                "3|0.1|1.234567e+06|3.1",
            ),
            (
                r#"{{ printf "%.0f|%.0f|%.0f|%6.2f%%" 0.5 1.5 2.5 12.375 }}"#,
                "0|2|2| 12.38%",
            ),
            (r#"{{ printf "%d|%5d|%f" 7 -3 -0.5 }}"#, "7|   -3|-0.500000"),
            (
                r#"{{ printf "%q|%q|%+q|%#q|%q" "a\"b" 65 "é" "x" "\n" }}"#,
                "\"a\\\"b\"|'A'|\"\\u00e9\"|`x`|\"\\n\"",
            ),
            (
                r#"{{ printf "%t|%v|%5t" true false true }}"#,
                "true|false| true",
            ),
            (
                r#"{{ printf "%%|%c|%U|%#U" 65 65 233 }}"#,
                "%|A|U+0041|U+00E9 'é'",
            ),
            (
                r#"{{ printf "%x|% x|%X|%#x" "hi" "hi" "hi" "hi" }}"#,
                "6869|68 69|6869|0x6869",
            ),
            (r#"{{ printf "%[2]s %[1]s" "a" "b" }}"#, "b a"),
            (
                r#"{{ printf "%*d|%-*d|%.*f" 5 42 4 7 2 3.14159 }}"#,
                "   42|7   |3.14",
            ),
            (
                r#"{{ printf "%v %s" __timestamp__ (toDate "2006" "2020") }}"#,
                "2023-11-14 22:13:20.123456789 +0000 UTC 2020-01-01 00:00:00 +0000 UTC",
            ),
            (r#"{{ printf "%#v|%+v" "a" 5 }}"#, "\"a\"|5"),
            (r#"{{ printf "%v|%d" nil nil }}"#, "<nil>|%!d(<nil>)"),
            // Go's malformed verbs.
            (
                r#"{{ printf "%d" "x" }}|{{ printf "%s" 5 }}|{{ printf "%t" 1.5 }}"#,
                "%!d(string=x)|%!s(int=5)|%!t(float64=1.5)",
            ),
            (
                r#"{{ printf "%d" }}|{{ printf "%d" 1 2 }}|{{ printf "%" }}|{{ printf "%z" 1 }}"#,
                "%!d(MISSING)|1%!(EXTRA int=2)|%!(NOVERB)|%!z(int=1)",
            ),
            (
                r#"{{ printf "%[3]d" 1 }}|{{ printf "%*d" "x" 1 }}"#,
                "%!d(BADINDEX)|%!(BADWIDTH)1",
            ),
            (r#"{{ printf "x" 1 "a" }}"#, "x%!(EXTRA int=1, string=a)"),
        ]);
    }

    #[test]
    fn parse_errors() {
        let cases = [
            (
                "{{ foo }}",
                "template: line:1: function \"foo\" not defined",
            ),
            ("{{ .a }", "template: line:1: unexpected \"}\" in operand"),
            ("{{ if .a }}x", "template: line:1: unexpected EOF"),
            ("{{ .a", "template: line:1: unclosed action"),
            (
                "{{ .a\n\n",
                "template: line:3: unclosed action started at line:1",
            ),
            (
                "line1\n{{ foo }}",
                "template: line:2: function \"foo\" not defined",
            ),
            (
                "{{ range .a }}{{ end }}",
                "template: line:1: {{range}} is not supported in LogQL templates",
            ),
            (
                "{{ define \"x\" }}{{ end }}",
                "template: line:1: {{define}} is not supported in LogQL templates",
            ),
            (
                "{{ template \"x\" }}",
                "template: line:1: {{template}} is not supported in LogQL templates",
            ),
            (
                "{{ block \"x\" . }}{{ end }}",
                "template: line:1: {{block}} is not supported in LogQL templates",
            ),
            (
                "{{ break }}",
                "template: line:1: {{break}} is not supported in LogQL templates",
            ),
            ("{{ end }}", "template: line:1: unexpected {{end}}"),
            ("{{ else }}", "template: line:1: unexpected {{else}}"),
            (
                "{{ if .a }}{{ else }}{{ else }}{{ end }}",
                "template: line:1: expected end; found {{else}}",
            ),
            ("{{ end x }}", "template: line:1: unexpected \"x\" in end"),
            ("{{ }}", "template: line:1: missing value for command"),
            (
                "{{ if }}{{ end }}",
                "template: line:1: missing value for if",
            ),
            (
                "{{ .a | \"x\" }}",
                "template: line:1: non executable command in pipeline stage 2",
            ),
            (
                "{{ \"open }}",
                "template: line:1: unterminated quoted string",
            ),
            (
                "{{ `open }}",
                "template: line:1: unterminated raw quoted string",
            ),
            (
                "{{ 'ab' }}",
                "template: line:1: malformed character constant: 'ab'",
            ),
            (r#"{{ "\q" }}"#, "template: line:1: invalid syntax"),
            ("{{ (.a }}", "template: line:1: unclosed left paren"),
            ("{{ .a) }}", "template: line:1: unexpected right paren"),
            ("{{ 3x }}", "template: line:1: bad number syntax: \"3x\""),
            (
                "{{ 99999999999999999999 }}",
                "template: line:1: integer overflow: \"99999999999999999999\"",
            ),
            (
                "{{ 1i }}",
                "template: line:1: complex number \"1i\" is not supported in LogQL templates",
            ),
            ("{{ .a@ }}", "template: line:1: bad character U+0040 '@'"),
            (
                "{{ \"a\".b }}",
                "template: line:1: unexpected . after term \"\\\"a\\\"\"",
            ),
            (
                "{{ $x, $y := 1 }}",
                "template: line:1: too many declarations in command",
            ),
            ("{{/* x }}", "template: line:1: unclosed comment"),
            (
                "{{/* x */ .a }}",
                "template: line:1: comment ends before closing delimiter",
            ),
            (
                "{{ .a ! }}",
                "template: line:1: unexpected \"!\" in operand",
            ),
            (
                "{{ .a → }}",
                "template: line:1: unrecognized character in action: U+2192 '→'",
            ),
            (
                "{{ print \"this is a long one\" | }",
                "template: line:1: unexpected \"}\" in command",
            ),
            (
                "{{ end \"0123456789abc\" }}",
                "template: line:1: unexpected \"\\\"012345678\"... in end",
            ),
            (
                "{{ if .a }}{{ print (len }}{{ end }}",
                "template: line:1: unclosed left paren",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(parse_err(t), want, "template {t:?}");
        }
        // Go names a long token by its first ten characters.
        assert_eq!(
            parse_err("{{ .a \"0123456789abc\" | 5 }}"),
            "template: line:1: non executable command in pipeline stage 2"
        );
        assert_eq!(
            parse_err("{{ if .a \"0123456789abc\" else }}"),
            "template: line:1: unexpected <else> in operand"
        );
        assert_eq!(
            parse_err("{{ printf \"%s\" \"0123456789abc\")}}"),
            "template: line:1: unexpected right paren"
        );
        let deep = format!(
            "{{{{ {}1{} }}}}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(
            parse_err(&deep),
            "template: line:1: max expression depth exceeded"
        );
        let nested = format!(
            "{}{}",
            "{{ if 1 }}".repeat(MAX_DEPTH + 1),
            "{{ end }}".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(
            parse_err(&nested),
            "template: line:1: max nesting depth exceeded"
        );
        let ok = format!(
            "{{{{ {}1{} }}}}",
            "(".repeat(MAX_DEPTH - 1),
            ")".repeat(MAX_DEPTH - 1)
        );
        assert_eq!(render(&ok), "1");
        let deepest = format!(
            "{}x{}",
            "{{ if 1 }}".repeat(MAX_DEPTH),
            "{{ end }}".repeat(MAX_DEPTH)
        );
        assert_eq!(render(&deepest), "x");
    }

    #[test]
    fn execution_errors() {
        let cases = [
            (
                "{{ ToUpper 5 }}",
                "template: line:1:11: executing \"line\" at <5>: expected string; found 5",
            ),
            (
                "{{ 5 | ToUpper }}",
                "template: line:1:7: executing \"line\" at <ToUpper>: wrong type for value; expected string; got int",
            ),
            (
                "{{ trunc \"5\" .msg }}",
                "template: line:1:9: executing \"line\" at <\"5\">: expected integer; found \"5\"",
            ),
            (
                "{{ trunc 1.5 .msg }}",
                "template: line:1:9: executing \"line\" at <1.5>: expected integer; found 1.5",
            ),
            (
                "{{ trunc .n .msg }}",
                "template: line:1:9: executing \"line\" at <.n>: wrong type for value; expected int; got string",
            ),
            (
                "{{ .app.x }}",
                "template: line:1:7: executing \"line\" at <.app.x>: can't evaluate field x in type string",
            ),
            (
                "{{ .app \"x\" }}",
                "template: line:1:3: executing \"line\" at <.app>: app is not a method but has arguments",
            ),
            (
                "{{ \"a\" \"b\" }}",
                "template: line:1:3: executing \"line\" at <\"a\">: can't give argument to non-function \"a\"",
            ),
            (
                "{{ nil }}",
                "template: line:1:3: executing \"line\" at <nil>: nil is not a command",
            ),
            (
                "{{ ToUpper nil }}",
                "template: line:1:11: executing \"line\" at <nil>: cannot assign nil to string",
            ),
            (
                "{{ 18446744073709551615 }}",
                "template: line:1:3: executing \"line\" at <18446744073709551615>: 18446744073709551615 overflows int",
            ),
            (
                "{{ ToUpper }}",
                "template: line:1:3: executing \"line\" at <ToUpper>: wrong number of args for ToUpper: want 1 got 0",
            ),
            (
                "{{ .app | ToUpper \"x\" }}",
                "template: line:1:10: executing \"line\" at <ToUpper>: wrong number of args for ToUpper: want 1 got 2",
            ),
            (
                "{{ printf }}",
                "template: line:1:3: executing \"line\" at <printf>: wrong number of args for printf: want at least 1 got 0",
            ),
            (
                "{{ .app | __line__ }}",
                "template: line:1:10: executing \"line\" at <__line__>: wrong number of args for __line__: want 0 got 1",
            ),
            (
                "x\n  {{ div 1 0 }}",
                "template: line:2:5: executing \"line\" at <div 1 0>: error calling div: runtime error: integer divide by zero",
            ),
            (
                "{{ .app | div 1 }}",
                "template: line:1:10: executing \"line\" at <div 1>: error calling div: runtime error: integer divide by zero",
            ),
            (
                "{{ $x := 1 }}{{ $x 2 }}",
                "template: line:1:16: executing \"line\" at <$x>: can't give argument to non-function $x",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(render_err(t), want, "template {t:?}");
        }
        assert!(render_err("{{ . }}").contains("can't print the label map"));
        assert!(render_err("{{ $ }}").contains("can't print the label map"));
        assert!(render_err("{{ eq . 1 }}").contains("can't use the label map as a value"));
    }

    #[test]
    fn templates_are_reusable_and_shareable() {
        fn shareable<T: Send + Sync + Clone>(_: &T) {}
        let t = parse("{{ .app }}:{{ regexReplaceAll \"a\" __line__ \"A\" }}");
        shareable(&t);
        let mut other = labels();
        other.insert("app".to_string(), "db".to_string());
        assert_eq!(t.render(&labels(), "banana", 0).unwrap(), "api:bAnAnA");
        assert_eq!(t.render(&other, "abc", 0).unwrap(), "db:Abc");
        assert_eq!(
            format!("{t:?}"),
            "Template(\"{{ .app }}:{{ regexReplaceAll \\\"a\\\" __line__ \\\"A\\\" }}\")"
        );
    }

    #[test]
    fn every_function_is_unique_and_callable() {
        for dialect in [Dialect::Loki, Dialect::Prometheus] {
            let funcs = BUILTINS.iter().chain(dialect.functions());
            let mut names: Vec<&str> = funcs.map(|f| f.name).collect();
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n, "duplicate function names in {dialect:?}");
            for name in names {
                let text = format!("{{{{ if false }}}}{{{{ {name} }}}}{{{{ end }}}}");
                let t = Template::parse_in(dialect, "t", &text);
                assert!(t.is_ok(), "{name}: {t:?}");
            }
        }
    }

    #[test]
    fn go_float_formatting() {
        let cases: &[(f64, char, i64, &str)] = &[
            (0.0, 'g', -1, "0"),
            (-0.0, 'g', -1, "-0"),
            (1.0, 'g', -1, "1"),
            (123456.0, 'g', -1, "123456"),
            (1e20, 'g', -1, "1e+20"),
            (1.5e-7, 'g', -1, "1.5e-07"),
            (5e-324, 'g', -1, "5e-324"),
            (f64::MAX, 'g', -1, "1.7976931348623157e+308"),
            (f64::INFINITY, 'g', -1, "+Inf"),
            (f64::NAN, 'f', 2, "NaN"),
            (0.000123, 'e', 2, "1.23e-04"),
            (123.456, 'f', 0, "123"),
            (0.05, 'f', 1, "0.1"),
            (100.0, 'g', 3, "100"),
            (1.0, 'g', 3, "1"),
            (0.0001234, 'g', 2, "0.00012"),
            (1e100, 'e', -1, "1e+100"),
        ];
        for &(v, fmt, prec, want) in cases {
            assert_eq!(format_float(v, fmt, prec), want, "{v} {fmt} {prec}");
        }
    }

    #[test]
    fn trailing_zero_decimals() {
        assert_eq!(trim_zero_decimal("1.000"), "1");
        assert_eq!(trim_zero_decimal("1.50"), "1.50");
        assert_eq!(trim_zero_decimal("10"), "10");
    }

    #[test]
    fn go_quoting() {
        assert_eq!(
            go_quote("a\"b\\c\n\t\x01é\u{a0}\u{1F600}"),
            "\"a\\\"b\\\\c\\n\\t\\x01é\\u00a0😀\""
        );
        assert_eq!(quote_with("é", '"', true), "\"\\u00e9\"");
        assert_eq!(unquote(r#""\101\x42\u0043\U00000044""#).unwrap(), "ABCD");
        assert_eq!(unquote("`a\r\nb`").unwrap(), "a\nb");
        assert!(unquote(r#""\'""#).is_err());
    }
}
