-- Target schema of the demo: the tables of the new Django application, named and shaped as
-- Django makes them (bigint `id` primary keys, `<name>_id` foreign keys, NOT NULL where the
-- model field is required, `created_at`/`updated_at`).
-- `migrate demo --create-target` drops these tables and the migrate schema, then runs this file
-- (it refuses a database that holds anything else).
DROP TABLE IF EXISTS shipping_shipment, quality_qaresult, inventory_skid, production_job,
    inventory_coil, customers_customer, production_line, shipping_carrier CASCADE;
DROP SCHEMA IF EXISTS migrate CASCADE;

-- shipping.Carrier
CREATE TABLE shipping_carrier (
    id          bigint PRIMARY KEY,
    code        varchar(10) NOT NULL UNIQUE,
    name        varchar(100) NOT NULL,
    scac        varchar(4),
    phone       varchar(20),
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamp,
    updated_at  timestamp NOT NULL DEFAULT now()
);

-- production.Line
CREATE TABLE production_line (
    id            bigint PRIMARY KEY,
    code          varchar(10) NOT NULL UNIQUE,
    description   varchar(200),
    max_width_mm  numeric(8,2),
    is_active     boolean NOT NULL DEFAULT true,
    created_at    timestamp NOT NULL DEFAULT now(),
    updated_at    timestamp NOT NULL DEFAULT now()
);

-- customers.Customer
CREATE TABLE customers_customer (
    id             bigint PRIMARY KEY,
    code           varchar(12) NOT NULL UNIQUE,
    name           varchar(120) NOT NULL,
    contact_name   varchar(80),
    email          varchar(254),
    phone          varchar(20),
    address        varchar(120),
    city           varchar(60),
    state          varchar(2),
    postal_code    varchar(10),
    country        varchar(2) NOT NULL,
    credit_limit   numeric(14,2),
    is_active      boolean NOT NULL DEFAULT true,
    created_at     date,
    updated_at     timestamp NOT NULL DEFAULT now()
);

-- inventory.Coil
CREATE TABLE inventory_coil (
    id              bigint PRIMARY KEY,
    coil_number     varchar(20) NOT NULL UNIQUE,
    customer_id     bigint NOT NULL REFERENCES customers_customer (id),
    heat_number     varchar(12),
    grade           varchar(20),
    gauge_mm        numeric(6,3),
    width_mm        numeric(8,2),
    weight_kg       numeric(12,3),
    length_m        numeric(10,1),
    location        varchar(20),
    status          varchar(12) NOT NULL,
    received_on     date,
    mill            varchar(40),
    surface_finish  varchar(20),
    coating         varchar(20),
    on_hold         boolean NOT NULL DEFAULT false,
    notes           text,
    created_at      timestamp,
    updated_at      timestamp NOT NULL DEFAULT now()
);

-- production.Job
CREATE TABLE production_job (
    id               bigint PRIMARY KEY,
    job_number       varchar(20) NOT NULL UNIQUE,
    customer_id      bigint NOT NULL REFERENCES customers_customer (id),
    coil_id          bigint NOT NULL REFERENCES inventory_coil (id),
    line_code        varchar(10),
    job_type         varchar(10) NOT NULL,
    status           varchar(12) NOT NULL,
    priority         smallint,
    scheduled_start  timestamp,
    scheduled_end    timestamp,
    started_at       timestamp,
    finished_at      timestamp,
    target_gauge_mm  numeric(6,3),
    target_width_mm  numeric(8,2),
    pieces_ordered   integer,
    operator         varchar(30),
    notes            text,
    is_rush          boolean NOT NULL DEFAULT false,
    created_at       timestamp,
    updated_at       timestamp NOT NULL DEFAULT now()
);

-- inventory.Skid
CREATE TABLE inventory_skid (
    id               bigint PRIMARY KEY,
    skid_number      varchar(20) NOT NULL UNIQUE,
    job_id           bigint NOT NULL REFERENCES production_job (id),
    piece_count      integer,
    net_weight_kg    numeric(12,1),
    gross_weight_kg  numeric(12,1),
    location         varchar(20),
    status           varchar(12) NOT NULL,
    created_at       timestamp,
    updated_at       timestamp NOT NULL DEFAULT now()
);

-- quality.QAResult
CREATE TABLE quality_qaresult (
    id              bigint PRIMARY KEY,
    job_id          bigint NOT NULL REFERENCES production_job (id),
    test_type       varchar(20) NOT NULL,
    measured_value  numeric(12,4),
    unit            varchar(8),
    min_spec        numeric(12,4),
    max_spec        numeric(12,4),
    passed          boolean,
    tested_by       varchar(30),
    tested_at       timestamp,
    created_at      timestamp NOT NULL DEFAULT now(),
    updated_at      timestamp NOT NULL DEFAULT now()
);

-- shipping.Shipment
CREATE TABLE shipping_shipment (
    id                bigint PRIMARY KEY,
    bol_number        varchar(20) NOT NULL UNIQUE,
    customer_id       bigint NOT NULL REFERENCES customers_customer (id),
    carrier_id        bigint NOT NULL REFERENCES shipping_carrier (id),
    ship_date         date,
    delivered_on      date,
    status            varchar(12) NOT NULL,
    gross_weight_kg   numeric(12,1),
    net_weight_kg     numeric(12,1),
    piece_count       integer,
    destination_city  varchar(60),
    created_at        timestamp NOT NULL DEFAULT now(),
    updated_at        timestamp NOT NULL DEFAULT now()
);

CREATE INDEX ON inventory_coil (customer_id);
CREATE INDEX ON production_job (customer_id);
CREATE INDEX ON production_job (coil_id);
CREATE INDEX ON inventory_skid (job_id);
CREATE INDEX ON quality_qaresult (job_id);
CREATE INDEX ON shipping_shipment (customer_id);
CREATE INDEX ON shipping_shipment (carrier_id);
