//! Fixed-point numbers for log lines and tables, written without floats:
//! `1234` milliseconds as `1.2` seconds. Formatting an `f64` would bring
//! the float printing code into the binary, which must stay small.

use std::fmt;

/// `value / 10^shift`, shown with `places` decimals, rounded half up.
pub(crate) struct Fixed {
    value: u128,
    shift: u32,
    places: u32,
}

impl Fixed {
    /// `value` in units of 10^-`shift`, to be shown with `places` decimals
    /// (at most `shift`).
    pub(crate) fn new(value: u128, shift: u32, places: u32) -> Fixed {
        Fixed {
            value,
            shift,
            places: places.min(shift),
        }
    }

    /// Milliseconds as seconds with one decimal: `1234` is `1.2`.
    pub(crate) fn seconds(ms: u128) -> Fixed {
        Fixed::new(ms, 3, 1)
    }
}

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = 10u128.pow(self.shift - self.places);
        let rounded = self.value.saturating_add(unit / 2) / unit;
        if self.places == 0 {
            return write!(f, "{rounded}");
        }
        let scale = 10u128.pow(self.places);
        let places = self.places as usize;
        write!(f, "{}.{:0places$}", rounded / scale, rounded % scale)
    }
}

#[cfg(test)]
mod tests {
    use super::Fixed;

    #[test]
    fn rounds_half_up_and_pads_the_decimals() {
        assert_eq!(Fixed::seconds(1234).to_string(), "1.2");
        assert_eq!(Fixed::seconds(1250).to_string(), "1.3");
        assert_eq!(Fixed::seconds(4960).to_string(), "5.0");
        assert_eq!(Fixed::seconds(0).to_string(), "0.0");
        assert_eq!(Fixed::new(61, 3, 3).to_string(), "0.061");
        assert_eq!(Fixed::new(1_234_567, 3, 2).to_string(), "1234.57");
        assert_eq!(Fixed::new(7, 0, 2).to_string(), "7");
    }
}
