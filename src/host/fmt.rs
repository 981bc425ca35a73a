//! `fmt::*`: numbers and text laid out for people — a fixed number of decimals and padding to a
//! column, what `"%5.1f"` and `"%-12s"` give in other languages. Rhai's own `to_string()` and
//! string interpolation do the rest.

use rhai::{Dynamic, Module};

use super::{fail, function};

pub fn module() -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// `number` (an int or a float) with exactly `decimals` digits after the point.
        ///
        /// ```rhai
        /// print(`cpu ${fmt::fixed(12.345, 1)} %`);   // cpu 12.3 %
        /// ```
        fn fixed(call, number: Dynamic, decimals: i64) -> String {
            let value = number
                .as_float()
                .or_else(|_| number.as_int().map(|i| i as f64))
                .map_err(|found| fail(format!("fmt::fixed: {found} is not a number")))?;
            let decimals = usize::try_from(decimals.clamp(0, 17)).unwrap_or(0);
            Ok(format!("{value:.decimals$}"))
        }
    );
    function!(&mut module,
        /// `value` as text, padded with spaces on the right to `width` characters (left-aligned,
        /// `"%-12s"`); longer text is kept whole.
        ///
        /// ```rhai
        /// print(fmt::left("blue", 8) + "|");   // "blue    |"
        /// ```
        fn left(call, value: Dynamic, width: i64) -> String {
            let text = value.to_string();
            let width = usize::try_from(width).unwrap_or(0);
            Ok(format!("{text:<width$}"))
        }
    );
    function!(&mut module,
        /// `value` as text, padded with spaces on the left to `width` characters (right-aligned,
        /// `"%5s"`, for numbers in a column); longer text is kept whole.
        ///
        /// ```rhai
        /// print(fmt::right(fmt::fixed(3.5, 1), 6));   // "   3.5"
        /// ```
        fn right(call, value: Dynamic, width: i64) -> String {
            let text = value.to_string();
            let width = usize::try_from(width).unwrap_or(0);
            Ok(format!("{text:>width$}"))
        }
    );
    module
}
