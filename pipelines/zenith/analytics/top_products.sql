-- Task 8: the 5 products with the most purchases on the most recent day (ties: by product_id).
SELECT event_date, product_id, product_name, category, purchases, revenue
FROM gold_daily_product_performance
WHERE event_date = (SELECT MAX(event_date) FROM gold_daily_product_performance)
ORDER BY purchases DESC, product_id
LIMIT 5
