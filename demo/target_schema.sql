-- Target schema of the demo: the new (Django-style) application's tables.
-- `migrate demo --create-target` drops these tables and the migrate schema, then runs this file.
DROP TABLE IF EXISTS shipping_shipment, quality_qaresult, inventory_skid, production_job,
    inventory_coil, customers_customer, production_line, carriers_carrier CASCADE;
DROP SCHEMA IF EXISTS migrate CASCADE;

CREATE TABLE carriers_carrier (
    id          bigint PRIMARY KEY,
    code        varchar(10) NOT NULL UNIQUE,
    name        varchar(100) NOT NULL,
    phone       varchar(20),
    is_active   boolean NOT NULL DEFAULT true
);

CREATE TABLE production_line (
    id            bigint PRIMARY KEY,
    code          varchar(10) NOT NULL UNIQUE,
    description   varchar(200),
    max_width_mm  numeric(8,2),
    is_active     boolean NOT NULL DEFAULT true
);

CREATE TABLE customers_customer (
    id             bigint PRIMARY KEY,
    code           varchar(12) NOT NULL UNIQUE,
    name           varchar(120) NOT NULL,
    email          varchar(254),
    phone          varchar(20),
    credit_limit   numeric(14,2),
    is_active      boolean NOT NULL DEFAULT true,
    created_on     date,
    source_system  varchar(10) NOT NULL
);

CREATE TABLE inventory_coil (
    id            bigint PRIMARY KEY,
    coil_number   varchar(20) NOT NULL UNIQUE,
    customer_id   bigint NOT NULL REFERENCES customers_customer (id),
    grade         varchar(20),
    weight_kg     numeric(12,3),
    width_mm      numeric(8,2),
    thickness_mm  numeric(6,3),
    received_on   date,
    on_hold       boolean NOT NULL DEFAULT false
);

CREATE TABLE production_job (
    id            bigint PRIMARY KEY,
    job_number    varchar(20) NOT NULL UNIQUE,
    coil_id       bigint NOT NULL REFERENCES inventory_coil (id),
    line_id       bigint NOT NULL REFERENCES production_line (id),
    status        varchar(12) NOT NULL,
    scheduled_at  timestamp,
    completed_at  timestamp
);

CREATE TABLE inventory_skid (
    id             bigint PRIMARY KEY,
    skid_number    varchar(20) NOT NULL UNIQUE,
    job_id         bigint NOT NULL REFERENCES production_job (id),
    piece_count    integer,
    net_weight_kg  numeric(12,3),
    created_at     timestamp
);

CREATE TABLE quality_qaresult (
    id            bigint PRIMARY KEY,
    coil_id       bigint NOT NULL REFERENCES inventory_coil (id),
    test_type     varchar(20) NOT NULL,
    result_value  numeric(10,4),
    passed        boolean,
    tested_on     date,
    notes         text
);

CREATE TABLE shipping_shipment (
    id            bigint PRIMARY KEY,
    bol_number    varchar(20) NOT NULL,
    customer_id   bigint NOT NULL REFERENCES customers_customer (id),
    carrier_id    bigint NOT NULL REFERENCES carriers_carrier (id),
    skid_id       bigint REFERENCES inventory_skid (id),
    ship_date     date,
    weight_kg     numeric(12,3),
    delivered     boolean NOT NULL DEFAULT false
);
CREATE INDEX ON inventory_coil (customer_id);
CREATE INDEX ON production_job (coil_id);
CREATE INDEX ON inventory_skid (job_id);
CREATE INDEX ON quality_qaresult (coil_id);
CREATE INDEX ON shipping_shipment (customer_id);
