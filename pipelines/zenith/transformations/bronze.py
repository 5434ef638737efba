"""Bronze (tasks 1-3): raw data into Delta with minimal change, plus what makes it traceable."""
from pyspark.sql import functions as F

from assay import pipelines as dp

# Task 1: an explicit schema, so a malformed or drifting file can never change the table's types.
USER_EVENT_SCHEMA = ("event_id STRING, event_timestamp STRING, user_id INT, event_type STRING, "
                     "product_id STRING, session_id STRING")
CUSTOMER_SCHEMA = ("customer_id INT, first_name STRING, last_name STRING, email STRING, location STRING, "
                   "signup_date STRING")
PRODUCT_SCHEMA = "product_id STRING, product_name STRING, category STRING, price DOUBLE"


@dp.table(name="bronze.bronze_user_events",
          comment="Every user event line as landed (Auto Loader semantics), with ingestion time and event_dt.")
def bronze_user_events():
    # rescue: the schema stays fixed; fields that appear later (schema drift) land in _rescued_data.
    return (dp.read_files("streaming/user_events", format="json", schema=USER_EVENT_SCHEMA,
                          schema_evolution_mode="rescue")
            .withColumn("ingestion_timestamp", F.current_timestamp())
            # An unparseable timestamp becomes NULL here and is quarantined in silver.
            .withColumn("event_dt", F.try_to_timestamp(F.col("event_timestamp"))))


@dp.materialized_view(name="bronze.bronze_customer_profiles",
                      comment="Customer profiles CSV (task 2): customer_id as an integer, the rest strings.")
def bronze_customer_profiles():
    return dp.read_files("batch/customers", format="csv", schema=CUSTOMER_SCHEMA, header=True, batch=True)


@dp.materialized_view(name="bronze.bronze_product_details", comment="Product catalogue Parquet (task 3).")
def bronze_product_details():
    return dp.read_files("batch/products", format="parquet", schema=PRODUCT_SCHEMA, batch=True)
