module videopipe/tests/deploy/gotemplate

go 1.19
