-- Task 10: the 10 customers with the highest total purchase value (ties: by user_id).
SELECT user_id, region, ROUND(total_purchase_value, 2) AS total_purchase_value, total_purchases,
       distinct_products_purchased, last_purchase_timestamp
FROM customer_purchase_summary
WHERE user_id IS NOT NULL           -- purchases without a user are not a customer
ORDER BY total_purchase_value DESC, user_id
LIMIT 10
