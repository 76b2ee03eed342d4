//! The trusted-UI text of a transaction (docs/PROTOCOL.md §5).
//!
//! The TEE renders this text itself from the [`Transaction`] in the
//! [`crate::PaymentChallenge`] and signs its SHA-256 (`display_hash`). The
//! verifier renders the transaction it stored with the challenge the same way
//! and compares, so what the user saw is bound to what the server approves.

use crate::messages::Transaction;

/// ISO 4217 currencies whose minor unit is not 2 decimal places.
/// Every other currency is rendered with 2 decimals.
const EXPONENTS: &[(&str, u32)] = &[
    ("BHD", 3),
    ("BIF", 0),
    ("CLF", 4),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("PYG", 0),
    ("RWF", 0),
    ("TND", 3),
    ("UGX", 0),
    ("UYI", 0),
    ("UYW", 4),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
];

/// Number of decimal places of `currency`'s minor unit.
pub fn minor_unit_exponent(currency: &str) -> u32 {
    EXPONENTS
        .iter()
        .find(|(c, _)| *c == currency)
        .map_or(2, |(_, e)| *e)
}

/// Formats an amount in minor units with the currency's decimal places,
/// e.g. `8800` CNY as `88.00`, `500` JPY as `500`.
pub fn format_amount(amount_minor: u64, currency: &str) -> String {
    let mut buf = [0u8; AMOUNT_MAX_LEN];
    let text = write_amount(amount_minor, minor_unit_exponent(currency), &mut buf);
    String::from_utf8_lossy(text).into_owned()
}

/// Longest rendered amount: `u64::MAX` has 20 digits, plus the point and
/// the leading zeros of an exponent up to [`EXPONENTS`]' largest (4).
const AMOUNT_MAX_LEN: usize = 24;

/// Writes `amount_minor` with `exp` decimal places at the end of `buf` and
/// returns the written part: at least `exp + 1` digits, a `.` before the last
/// `exp` of them when `exp > 0`. Digit by digit, without `core::fmt`: the
/// verifier renders a transaction for every payment (P13), and the format
/// machinery cost more than the rest of the rendering.
fn write_amount(amount_minor: u64, exp: u32, buf: &mut [u8; AMOUNT_MAX_LEN]) -> &[u8] {
    let exp = usize::try_from(exp).unwrap_or(usize::MAX).min(4);
    let mut n = amount_minor;
    let mut start = AMOUNT_MAX_LEN;
    let mut written = 0usize;
    while n > 0 || written <= exp {
        if exp > 0 && written == exp {
            start -= 1;
            buf[start] = b'.';
        }
        start -= 1;
        // `n % 10` is below 10, so it fits in a byte.
        buf[start] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
        written += 1;
    }
    &buf[start..]
}

/// The exact text the trusted UI displays, lines separated by `\n`, no
/// trailing newline. The first line names the relying party the statement
/// will be bound to (its rp id), so a challenge relayed from another service
/// shows whom the user is really paying through:
///
/// ```text
/// pay.example.com
/// Pay 88.00 CNY
/// To: Coffee Corner (merchant-0042)
/// Order: 2026-11-21-000123
/// Memo: 2 lattes
/// ```
///
/// The `Memo:` line is present only when the transaction has a memo.
pub fn render_transaction(rp_id: &str, tx: &Transaction) -> String {
    let mut amount_buf = [0u8; AMOUNT_MAX_LEN];
    let amount = write_amount(
        tx.amount_minor,
        minor_unit_exponent(&tx.currency),
        &mut amount_buf,
    );
    // ASCII digits and `.` only.
    let amount = core::str::from_utf8(amount).unwrap_or_default();
    let mut text = String::with_capacity(
        48 + rp_id.len()
            + amount.len()
            + tx.currency.len()
            + tx.payee_name.len()
            + tx.payee_id.len()
            + tx.order_id.len()
            + tx.memo.as_ref().map_or(0, String::len),
    );
    for part in [
        rp_id,
        "\nPay ",
        amount,
        " ",
        &tx.currency,
        "\nTo: ",
        &tx.payee_name,
        " (",
        &tx.payee_id,
        ")\nOrder: ",
        &tx.order_id,
    ] {
        text.push_str(part);
    }
    if let Some(memo) = &tx.memo {
        text.push_str("\nMemo: ");
        text.push_str(memo);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_use_iso4217_exponents() {
        assert_eq!(format_amount(8800, "CNY"), "88.00");
        assert_eq!(format_amount(5, "USD"), "0.05");
        assert_eq!(format_amount(500, "JPY"), "500");
        assert_eq!(format_amount(1234, "KWD"), "1.234");
        assert_eq!(format_amount(u64::MAX, "CNY"), "184467440737095516.15");
    }

    /// The former implementation (`core::fmt` padding), kept as the oracle.
    fn format_amount_with_fmt(amount_minor: u64, currency: &str) -> String {
        let exp = minor_unit_exponent(currency);
        if exp == 0 {
            return amount_minor.to_string();
        }
        let digits = format!(
            "{:0width$}",
            amount_minor,
            width = usize::try_from(exp).unwrap() + 1
        );
        let split = digits.len() - usize::try_from(exp).unwrap();
        format!("{}.{}", &digits[..split], &digits[split..])
    }

    #[test]
    fn amounts_match_the_fmt_rendering_at_every_exponent() {
        // `write_amount` has room for exponents up to 4.
        assert!(EXPONENTS.iter().all(|(_, e)| *e <= 4));
        let mut amounts = vec![0, 1, 9, 10, 99, 100, 999, 1000, 9999, 10_000, 12_345];
        for k in 0..20u32 {
            let p = 10u64.pow(k);
            amounts.extend([p - 1, p, p + 1]);
        }
        amounts.extend([u64::MAX, u64::MAX - 1, u64::MAX / 7]);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            amounts.push(x >> (x % 64));
        }
        for currency in ["CNY", "JPY", "KWD", "CLF", "XYZ"] {
            for &a in &amounts {
                assert_eq!(
                    format_amount(a, currency),
                    format_amount_with_fmt(a, currency),
                    "{a} {currency}"
                );
            }
        }
    }

    #[test]
    fn renders_memo_only_when_present() {
        let mut tx = Transaction {
            amount_minor: 8800,
            currency: "CNY".into(),
            payee_id: "merchant-0042".into(),
            payee_name: "Coffee Corner".into(),
            order_id: "A1".into(),
            memo: None,
        };
        assert_eq!(
            render_transaction("pay.example.com", &tx),
            "pay.example.com\nPay 88.00 CNY\nTo: Coffee Corner (merchant-0042)\nOrder: A1"
        );
        tx.memo = Some("2 lattes".into());
        assert!(render_transaction("pay.example.com", &tx).ends_with("\nMemo: 2 lattes"));
    }
}
