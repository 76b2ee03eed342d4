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
    let exp = minor_unit_exponent(currency);
    if exp == 0 {
        return amount_minor.to_string();
    }
    let digits = format!(
        "{:0width$}",
        amount_minor,
        width = usize::try_from(exp).unwrap_or(2) + 1
    );
    let split = digits.len() - usize::try_from(exp).unwrap_or(2);
    format!("{}.{}", &digits[..split], &digits[split..])
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
    let amount = format_amount(tx.amount_minor, &tx.currency);
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
        &amount,
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
