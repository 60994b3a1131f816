//! The external order number Mamut keeps for each imported order, made from a template such
//! as `{shop_id}:{order_id}`, and read back into the shop and the shop's order id.

use shared::ids::ShopId;

/// The external order number Mamut keeps for each imported order, and the way back from it to
/// the shop and the shop's order id (for order status changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalNo {
    /// The literal text before, between and after the placeholders.
    parts: Vec<Piece>,
    /// The shop when the template does not name one.
    pub fixed_shop: Option<ShopId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Shop,
    Order,
}

impl ExternalNo {
    pub fn parse(template: &str, shop: Option<&str>) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            if start > 0 {
                parts.push(Piece::Text(rest[..start].to_owned()));
            }
            let Some(end) = rest[start..].find('}') else {
                return Err(format!("{template:?} has a {{ without }}"));
            };
            parts.push(match &rest[start..start + end + 1] {
                "{shop_id}" => Piece::Shop,
                "{order_id}" => Piece::Order,
                other => {
                    return Err(format!(
                        "{other} is not a placeholder; use {{order_id}} and {{shop_id}}"
                    ));
                }
            });
            rest = &rest[start + end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Piece::Text(rest.to_owned()));
        }
        if parts
            .iter()
            .any(|p| matches!(p, Piece::Text(t) if t.contains('}')))
        {
            return Err(format!("{template:?} has a }} without {{"));
        }
        let count = |piece: &Piece| parts.iter().filter(|p| *p == piece).count();
        if count(&Piece::Order) != 1 || count(&Piece::Shop) > 1 {
            return Err(format!(
                "{template:?} must contain {{order_id}} once (and {{shop_id}} at most once)"
            ));
        }
        let placeholders: Vec<usize> = (0..parts.len())
            .filter(|&i| !matches!(parts[i], Piece::Text(_)))
            .collect();
        if placeholders.windows(2).any(|w| w[1] == w[0] + 1) {
            return Err(format!(
                "{template:?}: put a separator such as \":\" between {{shop_id}} and {{order_id}}, \
                 or the shop could not be told from the order id"
            ));
        }
        // The text after {shop_id} must hold a character no shop id has, or where the shop id
        // ends could not be told.
        let slug = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        if let Some(i) = parts.iter().position(|p| *p == Piece::Shop)
            && let Some(Piece::Text(after)) = parts.get(i + 1)
            && after.chars().all(slug)
        {
            return Err(format!(
                "{template:?}: {after:?} after {{shop_id}} could be part of a shop id; separate \
                 with a character a shop id never has, such as \":\" or \"/\""
            ));
        }
        let fixed_shop = if count(&Piece::Shop) == 0 {
            let Some(shop) = shop else {
                return Err(format!(
                    "{template:?} does not name the shop: add {{shop_id}} (e.g. \
                     \"{{shop_id}}:{{order_id}}\"), or set mamut.import.shop_id to the one shop \
                     this Mamut client takes orders from"
                ));
            };
            Some(ShopId::new(shop).map_err(|e| format!("mamut.import.shop_id: {e}"))?)
        } else {
            None
        };
        Ok(Self { parts, fixed_shop })
    }

    /// The external number of a shop's order, or why this client takes no orders of that shop.
    pub fn render(&self, shop: &ShopId, order_id: &str) -> Result<String, String> {
        if let Some(fixed) = &self.fixed_shop
            && fixed != shop
        {
            return Err(format!(
                "this agent imports the orders of shop {fixed} only (mamut.import.shop_id), and \
                 this order is from shop {shop}: add {{shop_id}} to mamut.import.external_no to \
                 take orders of several shops"
            ));
        }
        let external: String = self
            .parts
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Shop => shop.as_str(),
                Piece::Order => order_id,
            })
            .collect();
        // One external number for one shop order, and back: else two orders could share one
        // (the second acknowledged with the first's number) or a status change go astray.
        if self.shop_order(&external) != Some((shop.clone(), order_id.to_owned())) {
            return Err(format!(
                "the external order number {external:?} of shop {shop}'s order {order_id:?} \
                 cannot be read back (the order id holds text of mamut.import.external_no): \
                 choose a template whose separators never appear in order ids"
            ));
        }
        Ok(external)
    }

    /// The shop and the shop's order id of an external number this template made.
    pub fn shop_order(&self, external: &str) -> Option<(ShopId, String)> {
        let mut rest = external;
        let mut shop = self.fixed_shop.clone();
        let mut order = None;
        for (i, part) in self.parts.iter().enumerate() {
            match part {
                Piece::Text(t) => rest = rest.strip_prefix(t.as_str())?,
                Piece::Shop | Piece::Order => {
                    // A placeholder runs to the next literal (or to the end).
                    let end = match self.parts.get(i + 1) {
                        Some(Piece::Text(next)) => rest.find(next.as_str())?,
                        _ => rest.len(),
                    };
                    let value = &rest[..end];
                    if value.is_empty() {
                        return None;
                    }
                    if *part == Piece::Shop {
                        shop = Some(ShopId::new(value).ok()?);
                    } else {
                        order = Some(value.to_owned());
                    }
                    rest = &rest[end..];
                }
            }
        }
        if !rest.is_empty() {
            return None;
        }
        Some((shop?, order?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop(s: &str) -> ShopId {
        ShopId::new(s).expect("shop id")
    }

    #[test]
    fn an_external_number_goes_there_and_back_with_or_without_the_shop() {
        let both = ExternalNo::parse("{shop_id}:{order_id}", None).expect("template");
        let ext = both.render(&shop("shop-se"), "100:234").expect("render");
        assert_eq!(ext, "shop-se:100:234");
        assert_eq!(
            both.shop_order(&ext),
            Some((shop("shop-se"), "100:234".to_owned()))
        );
        assert_eq!(both.shop_order("no-separator"), None);

        let single = ExternalNo::parse("WEB-{order_id}", Some("shop-se")).expect("template");
        assert_eq!(
            single.render(&shop("shop-se"), "100234").as_deref(),
            Ok("WEB-100234")
        );
        let other = single.render(&shop("shop-no"), "1").unwrap_err();
        assert!(other.contains("shop shop-se only"), "{other}");
        assert_eq!(
            single.shop_order("WEB-100234"),
            Some((shop("shop-se"), "100234".to_owned()))
        );
        assert_eq!(single.shop_order("100234"), None);

        // An order id holding the text after {order_id} would not read back: refused.
        let suffix = ExternalNo::parse("{order_id}@{shop_id}", None).expect("template");
        assert_eq!(
            suffix.render(&shop("shop-se"), "7").as_deref(),
            Ok("7@shop-se")
        );
        let e = suffix.render(&shop("shop-se"), "a@b").unwrap_err();
        assert!(e.contains("cannot be read back"), "{e}");
    }

    #[test]
    fn templates_that_could_not_be_read_back_are_refused() {
        for (template, shop, expect) in [
            ("{order_id}", None, "does not name the shop"),
            ("{shop_id}{order_id}", None, "separator"),
            ("{shop_id}-{order_id}", None, "could be part of a shop id"),
            ("{shop_id}", None, "{order_id} once"),
            ("{order_id}-{order_id}", Some("s"), "{order_id} once"),
            ("{order}", Some("s"), "not a placeholder"),
            ("{order_id", Some("s"), "without }"),
            ("x}{order_id}", Some("s"), "without {"),
            ("{order_id}", Some("Not A Slug"), "shop_id"),
        ] {
            let e = ExternalNo::parse(template, shop).unwrap_err();
            assert!(e.contains(expect), "{template}: {e}");
        }
    }
}
