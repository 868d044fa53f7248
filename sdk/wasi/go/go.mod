module kith.example/invoice

go 1.21
