-- Task 9: total revenue per day and product category.
SELECT event_date, category, ROUND(SUM(revenue), 2) AS total_revenue, SUM(purchases) AS purchases
FROM gold_daily_product_performance
GROUP BY event_date, category
ORDER BY event_date, total_revenue DESC, category
