"""What Greenlight keeps in its DynamoDB table: rollouts and app state, the fleet's reloads,
the night shrink's state. One marshalling (:mod:`.marshal`) for all of them."""
