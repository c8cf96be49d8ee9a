print("bench: todo")
