-- Reference schema of the Mamut One Enterprise data the agent touches (SQL Server, T-SQL).
--
-- These are the agent's *reference* names. Every Mamut installation differs a little (version,
-- add-ons, custom fields), so the agent never hard-codes them: mapping.toml maps each reference
-- table and column onto the installation's real names, and `agent check` verifies that every
-- mapped table and column exists before the agent is put to work.
--
-- Mamut facts the model follows:
--   * order statuses include quotation, unprocessed order, backorder, invoice (not delivered),
--     invoice, credit note and cancelled;
--   * an order keeps the shop's order number as its external number;
--   * the variant add-on supports two variant dimensions;
--   * integrations match customers by customer number, e-mail or organisation number.
--
-- `rv` columns are SQL Server rowversions: every insert or update gives the row a new, larger
-- value, which is how the agent finds changes cheaply (a cursor per table,
-- `WHERE rv > @last AND rv < MIN_ACTIVE_ROWVERSION()`). Each watched table needs an index that
-- starts with its rowversion column (the `*_rv` indexes below), so that a poll with nothing new
-- is an index seek, not a scan of the table; `agent check` reports a missing one.

CREATE TABLE customers (
    customer_no   INT            NOT NULL PRIMARY KEY,
    name          NVARCHAR(100)  NOT NULL,
    email         NVARCHAR(200)  NULL,
    org_no        NVARCHAR(20)   NULL,
    phone         NVARCHAR(40)   NULL,
    street        NVARCHAR(100)  NULL,
    zip           NVARCHAR(20)   NULL,
    city          NVARCHAR(60)   NULL,
    country       NVARCHAR(2)    NULL,
    ext_id        NVARCHAR(50)   NULL,    -- the customer's id in the external register, kept by Mamut's import
    rv            ROWVERSION
);
CREATE INDEX customers_email ON customers (email);
CREATE INDEX customers_org_no ON customers (org_no);

-- Products; a variant is a product row whose parent_article_no names its main product.
CREATE TABLE products (
    article_no         NVARCHAR(100)  NOT NULL PRIMARY KEY,
    name               NVARCHAR(200)  NOT NULL,
    description        NVARCHAR(4000) NULL,
    vat_rate           DECIMAL(5, 2)  NOT NULL,
    price              DECIMAL(19, 4) NOT NULL,   -- base sales price, excluding VAT
    active             BIT            NOT NULL,
    parent_article_no  NVARCHAR(100)  NULL,
    dimension1         NVARCHAR(50)   NULL,       -- variant dimension 1, e.g. colour
    dimension2         NVARCHAR(50)   NULL,       -- variant dimension 2, e.g. size
    rv                 ROWVERSION
);
CREATE INDEX products_rv ON products (rv);

CREATE TABLE stock (
    article_no  NVARCHAR(100)  NOT NULL,
    warehouse   NVARCHAR(50)   NOT NULL,
    quantity    DECIMAL(19, 4) NOT NULL,
    rv          ROWVERSION,
    PRIMARY KEY (article_no, warehouse)
);
CREATE INDEX stock_rv ON stock (rv);

CREATE TABLE price_list_prices (
    price_list  NVARCHAR(50)   NOT NULL,
    article_no  NVARCHAR(100)  NOT NULL,
    currency    NVARCHAR(3)    NOT NULL,
    price       DECIMAL(19, 4) NOT NULL,
    rv          ROWVERSION,
    PRIMARY KEY (price_list, article_no)
);
CREATE INDEX price_list_prices_rv ON price_list_prices (rv);

-- Orders and invoices share one table; doc_type tells them apart.
CREATE TABLE orders (
    order_no        INT            NOT NULL PRIMARY KEY,
    doc_type        NVARCHAR(10)   NOT NULL,  -- 'order' | 'invoice'
    customer_no     INT            NOT NULL REFERENCES customers (customer_no),
    external_no     NVARCHAR(50)   NOT NULL,  -- the shop's order id: the idempotency key
    shop_id         NVARCHAR(64)   NULL,      -- written by the SQL writer; Mamut's import leaves it NULL
    status          NVARCHAR(30)   NOT NULL,  -- see mapping.toml [statuses]
    order_date      DATETIME2(3)   NOT NULL,
    currency        NVARCHAR(3)    NOT NULL,
    payment_method  NVARCHAR(50)   NULL,
    payment_ref     NVARCHAR(100)  NULL,
    total           DECIMAL(19, 4) NOT NULL,
    tracking_no     NVARCHAR(100)  NULL,
    rv              ROWVERSION
);
CREATE INDEX orders_external ON orders (shop_id, external_no);
-- The import writer finds Mamut's orders by the external order number alone.
CREATE INDEX orders_external_no ON orders (external_no);
CREATE INDEX orders_rv ON orders (rv);

CREATE TABLE order_lines (
    order_no     INT            NOT NULL REFERENCES orders (order_no),
    line_no      INT            NOT NULL,
    article_no   NVARCHAR(100)  NULL,         -- NULL for a free-text line
    description  NVARCHAR(200)  NOT NULL,
    quantity     DECIMAL(19, 4) NOT NULL,
    unit_price   DECIMAL(19, 4) NOT NULL,
    discount     DECIMAL(19, 4) NOT NULL,
    vat_rate     DECIMAL(5, 2)  NOT NULL,
    PRIMARY KEY (order_no, line_no)
);
