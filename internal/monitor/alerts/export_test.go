package alerts

// alertsAccountKey is accountKey for the external tests.
var AlertsAccountKeyForTest = accountKey
