"""Swing (paper eq. 5) on PySpark, for negative-feedback logs that outgrow one machine.

Same definition, caps and output as `conrec.model.swing.swing_scores` (see there); the computation
is organised by user pair instead of by item: for every pair (u, v) of users sharing items, each
ordered item pair (i, j) in I(u) & I(v) receives w_u * w_v / (|I(u) & I(v)| + alpha2).
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from conrec.model.swing import SCORE_COLUMNS, SwingConfig


def cap_graph_spark(negatives: DataFrame, cfg: SwingConfig) -> DataFrame:
    """Distinct (user_id, item_id) edges after the caps of `conrec.model.swing.cap_graph`."""
    edges = negatives.groupBy("user_id", "item_id").agg(F.max("ts").alias("ts"))
    by_user = Window.partitionBy("user_id").orderBy(F.desc("ts"), F.asc("item_id"))
    edges = edges.withColumn("r", F.row_number().over(by_user))
    edges = edges.where(F.col("r") <= cfg.max_items_per_user).drop("r")
    by_item = Window.partitionBy("item_id").orderBy(F.desc("ts"), F.asc("user_id"))
    edges = edges.withColumn("r", F.row_number().over(by_item))
    return edges.where(F.col("r") <= cfg.max_users_per_item).select("user_id", "item_id")


def swing_scores_spark(negatives: DataFrame, cfg: SwingConfig | None = None) -> DataFrame:
    """Spark DataFrame item_i, item_j, score with the top-k neighbours of every item."""
    cfg = cfg or SwingConfig()
    edges = cap_graph_spark(negatives, cfg).cache()
    user_w = edges.groupBy("user_id").agg(
        F.pow(F.count("*") + F.lit(cfg.alpha1), F.lit(-cfg.theta)).alias("w")
    )
    item_n = edges.groupBy("item_id").agg(F.count("*").alias("n"))

    left, right = edges.alias("l"), edges.alias("r")
    same_item = F.col("l.item_id") == F.col("r.item_id")
    same_user = F.col("l.user_id") == F.col("r.user_id")
    # (u, v, item) for every item both disliked, u != v
    shared = left.join(right, same_item & ~same_user).select(
        F.col("l.user_id").alias("u"),
        F.col("r.user_id").alias("v"),
        F.col("l.item_id").alias("item"),
    )
    pairs = shared.groupBy("u", "v").agg(F.collect_list("item").alias("items"))
    pairs = (
        pairs.join(user_w.select(F.col("user_id").alias("u"), F.col("w").alias("wu")), "u")
        .join(user_w.select(F.col("user_id").alias("v"), F.col("w").alias("wv")), "v")
        .withColumn("c", F.col("wu") * F.col("wv") / (F.size("items") + F.lit(cfg.alpha2)))
    )
    contrib = (
        pairs.select("c", F.explode("items").alias("item_i"), "items")
        .select("c", "item_i", F.explode("items").alias("item_j"))
        .where(F.col("item_i") != F.col("item_j"))
    )
    raw = contrib.groupBy("item_i", "item_j").agg(F.sum("c").alias("raw"))

    common = (
        left.join(right, same_user & ~same_item)
        .groupBy(F.col("l.item_id").alias("item_i"), F.col("r.item_id").alias("item_j"))
        .agg(F.count("*").alias("common"))
        .where(F.col("common") > cfg.min_common_users)
    )
    scored = (
        raw.join(common, ["item_i", "item_j"])
        .join(item_n.select(F.col("item_id").alias("item_j"), "n"), "item_j")
        .withColumn("score", F.col("raw") / F.sqrt(F.col("n")))
        .where(F.col("score") > 0)
    )
    rank = Window.partitionBy("item_i").orderBy(F.desc("score"), F.asc("item_j"))
    top = scored.withColumn("r", F.row_number().over(rank)).where(F.col("r") <= cfg.top_k)
    return top.select(*SCORE_COLUMNS)


def swing_scores_pandas(
    spark: SparkSession, negatives: pd.DataFrame, cfg: SwingConfig | None = None
) -> pd.DataFrame:
    """Run `swing_scores_spark` on a pandas frame (user_id, item_id, ts) and collect the result."""
    frame = negatives[["user_id", "item_id", "ts"]].astype({"user_id": str, "item_id": str})
    sdf = spark.createDataFrame(frame.astype({"ts": "int64"}))
    out = swing_scores_spark(sdf, cfg).toPandas()
    return out.sort_values(["item_i", "score", "item_j"], ascending=[True, False, True])
