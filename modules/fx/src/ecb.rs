//! The ECB's reference-rate files (INTEGRATIONS.md §7): the history CSV (`Date,USD,JPY,…,`
//! with a trailing comma, newest first, `N/A` for a currency without a rate that day) and
//! the daily XML (`<Cube time='YYYY-MM-DD'><Cube currency='USD' rate='1.1172'/>…`). Both give
//! `1 EUR = rate quote`.

use chrono::NaiveDate;

use crate::decimal::Rate;

/// One published rate: 1 EUR = `rate` of `quote` on `date`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub date: NaiveDate,
    pub quote: String,
    pub rate: Rate,
}

fn code(text: &str) -> Option<&str> {
    let text = text.trim();
    (text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase())).then_some(text)
}

/// Every rate of the history CSV; a malformed line is an error naming it.
pub fn history(csv: &str) -> Result<Vec<Published>, String> {
    let mut lines = csv.lines();
    let header = lines.next().ok_or("the file is empty")?;
    let mut columns = header.split(',');
    if columns.next().map(str::trim) != Some("Date") {
        return Err("the header does not start with `Date`".into());
    }
    let quotes: Vec<Option<&str>> = columns.map(code).collect();
    let mut out = Vec::with_capacity(quotes.len() * 7_200);
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut cells = line.split(',');
        let date = cells
            .next()
            .and_then(|d| NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").ok())
            .ok_or_else(|| format!("line {}: no date", n + 2))?;
        for (quote, cell) in quotes.iter().zip(cells) {
            let (Some(quote), cell) = (quote, cell.trim()) else {
                continue;
            };
            if cell.is_empty() || cell == "N/A" {
                continue;
            }
            let rate = Rate::parse(cell)
                .ok_or_else(|| format!("line {}: `{cell}` is not a rate for {quote}", n + 2))?;
            out.push(Published {
                date,
                quote: quote.to_string(),
                rate,
            });
        }
    }
    Ok(out)
}

/// The value of `name='…'` (or `"…"`) inside one tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let at = tag.find(&format!("{name}="))? + name.len() + 1;
    let quote = tag[at..]
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"')?;
    let rest = &tag[at + 1..];
    rest.find(quote).map(|end| &rest[..end])
}

/// Every rate of an ECB XML file (the daily file, or the 90-day one: one `Cube time` per
/// day). Not a general XML reader: the ECB's `Cube` elements and their two attributes.
pub fn daily(xml: &str) -> Result<Vec<Published>, String> {
    let mut out = Vec::new();
    let mut date = None;
    for tag in xml.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or_default();
        if !tag.starts_with("Cube") {
            continue;
        }
        if let Some(time) = attribute(tag, "time") {
            date = Some(
                NaiveDate::parse_from_str(time, "%Y-%m-%d")
                    .map_err(|_| format!("`{time}` is not a date"))?,
            );
        } else if let (Some(quote), Some(rate)) =
            (attribute(tag, "currency"), attribute(tag, "rate"))
        {
            let date = date.ok_or("a rate before any date")?;
            let quote = code(quote).ok_or_else(|| format!("`{quote}` is not a currency code"))?;
            let rate = Rate::parse(rate).ok_or_else(|| format!("`{rate}` is not a rate"))?;
            out.push(Published {
                date,
                quote: quote.to_string(),
                rate,
            });
        }
    }
    if out.is_empty() {
        return Err("no rates in the file".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_skips_missing_values_and_the_trailing_column() {
        let csv =
            "Date,USD,JPY,CYP,\n2026-10-30,1.1172,175.68,N/A,\n1999-01-04,1.1789,133.73,0.58231,\n";
        let rates = history(csv).unwrap();
        assert_eq!(rates.len(), 5);
        assert_eq!(rates[0].quote, "USD");
        assert_eq!(rates[4].rate.to_string(), "0.58231");
        assert!(history("Day,USD\n").is_err());
        assert!(history("Date,USD,\n2026-10-30,x,\n").is_err());
    }

    #[test]
    fn the_daily_file_is_read_by_its_cubes() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
	<gesmes:subject>Reference rates</gesmes:subject>
	<Cube>
		<Cube time='2026-11-02'>
			<Cube currency='USD' rate='1.1164'/>
			<Cube currency='JPY' rate="175.2"/>
		</Cube>
	</Cube>
</gesmes:Envelope>"#;
        let rates = daily(xml).unwrap();
        assert_eq!(rates.len(), 2);
        assert_eq!(rates[1].date.to_string(), "2026-11-02");
        assert_eq!(rates[1].rate.to_string(), "175.2");
        assert!(daily("<html>maintenance</html>").is_err());
        assert!(daily("<Cube currency='USD' rate='1.1'/>").is_err());
    }
}
