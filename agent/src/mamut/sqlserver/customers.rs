//! The customer of a shop order: found by the configured keys (customer number, e-mail,
//! organisation number) in order, or created with the order's billing address.

use shared::domain::{Customer, CustomerType};
use tiberius::ToSql;

use super::catalog::Checker;
use super::errors::{At, classify_at};
use super::{Conn, SqlServer, field, first_int, sql, to_i32};
use crate::mamut::ApplyError;
use crate::mamut::settings::CustomerMatch;

impl SqlServer {
    /// Finds the customer by the configured keys, in order, or creates one.
    pub(super) async fn customer(
        &self,
        conn: &mut Conn,
        customer: &Customer,
        check: &Checker<'_>,
    ) -> Result<i32, ApplyError> {
        let m = &self.mapping;
        let (table, c) = (&m.tables.customers, &m.columns.customers);
        for key in &self.config.customer_match {
            let number;
            let (column, value): (&String, &dyn ToSql) = match key {
                CustomerMatch::CustomerNo => match customer.id.as_deref().map(str::parse::<i32>) {
                    Some(Ok(n)) => {
                        number = n;
                        (&c.customer_no, &number)
                    }
                    _ => continue,
                },
                CustomerMatch::Email => match &customer.email {
                    Some(email) if !email.is_empty() => (&c.email, email),
                    _ => continue,
                },
                CustomerMatch::OrgNo => match &customer.org_no {
                    Some(org_no) if !org_no.is_empty() => (&c.org_no, org_no),
                    _ => continue,
                },
            };
            let sql = sql::find_customer(m, column);
            if let Some(found) = first_int(conn, &sql, &[value], At::table(table)).await? {
                return to_i32(found);
            }
        }
        let (name, name_label) = match (customer.kind, &customer.company_name) {
            (CustomerType::Company, Some(company)) => (company.clone(), "company name"),
            _ => (
                [
                    customer.first_name.as_deref(),
                    customer.last_name.as_deref(),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
                "customer name",
            ),
        };
        let billing = &customer.billing_address;
        let text = |reference, column, label, value: Option<&str>| {
            check.text(
                field(reference, table, column, label),
                value.map(str::to_owned),
            )
        };
        let name = text("customers.name", &c.name, name_label, Some(&name))?;
        let email = text(
            "customers.email",
            &c.email,
            "e-mail address",
            customer.email.as_deref(),
        )?;
        let org_no = text(
            "customers.org_no",
            &c.org_no,
            "organisation number",
            customer.org_no.as_deref(),
        )?;
        let phone = text(
            "customers.phone",
            &c.phone,
            "phone number",
            customer.phone.as_deref(),
        )?;
        let street = text(
            "customers.street",
            &c.street,
            "street address",
            Some(&billing.street),
        )?;
        let zip = text("customers.zip", &c.zip, "postcode", Some(&billing.zip))?;
        let city = text("customers.city", &c.city, "city", Some(&billing.city))?;
        let country = text(
            "customers.country",
            &c.country,
            "country code",
            Some(&billing.country),
        )?;
        let number = self
            .number(
                conn,
                &self.config.customer_numbering,
                table,
                &c.customer_no,
                self.config.customer_number_start,
            )
            .await?;
        let mut params: Vec<&dyn ToSql> = Vec::with_capacity(9);
        if let Some(n) = &number {
            params.push(n);
        }
        params.extend([
            &name as &dyn ToSql,
            &email,
            &org_no,
            &phone,
            &street,
            &zip,
            &city,
            &country,
        ]);
        let own_keys = [self.racy_number(&self.config.customer_numbering, number)];
        let at = At {
            table: Some(table),
            own_keys: &own_keys,
        };
        let insert = sql::insert(
            table,
            &sql::customer_columns(m, number.is_some()),
            number.is_none(),
        );
        match number {
            Some(n) => {
                conn.execute(insert, &params)
                    .await
                    .map_err(|e| classify_at(e, at))?;
                Ok(n)
            }
            None => self.identity(conn, insert, &params, at).await,
        }
    }
}
